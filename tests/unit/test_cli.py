import subprocess
import sys

import pytest

VERBS = [
    "validate-config",
    "mlflow-init",
    "mlflow-sync",
    "obs-norm-stats",
    "train-ppo",
    "evaluate-ppo",
    "animate-pendulum",
    "aggregate",
    "plot",
    "export-reference",
    "ui",
]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    proc = subprocess.run(
        [sys.executable, "-m", "rl", verb, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "--config" in proc.stdout


def test_figures_without_tables_names_what_is_missing(tmp_path):
    (tmp_path / "config.yaml").write_text("study: x\nseeds: [0]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "figures", "--from", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "ppo_train.csv' is missing" in proc.stderr and "export-reference" in proc.stderr


def test_missing_input_file_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl",
            "train-ppo",
            "--config",
            "configs/ci.yaml",
            "--seed",
            "0",
            "--obs-stats",
            str(tmp_path / "none.json"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Missing observation statistics" in proc.stderr
    assert not (tmp_path / "out" / "policy.pt").exists()


def test_seed_not_in_config_is_refused(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl",
            "obs-norm-stats",
            "--config",
            "configs/ci.yaml",
            "--seed",
            "99",
            "--out",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--seed 99" in proc.stderr


def _rl(*args):
    return subprocess.run([sys.executable, "-m", "rl", *args], capture_output=True, text=True)


def test_the_verbs_are_the_stage_registry():
    from rl.cli import STAGES

    listed = _rl("--help").stdout
    assert {st.verb for st in STAGES.values()} >= set(VERBS)
    for st in STAGES.values():
        assert st.verb in listed


def test_set_overrides_one_config_value(tmp_path):
    out = tmp_path / "resolved.yaml"
    proc = _rl("validate-config", "--config", "configs/ci.yaml", "--set", "ppo.lr=1e-4",
               "--set", "seeds=[3, 4]", "--write", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import yaml

    resolved = yaml.safe_load(out.read_text())
    assert resolved["ppo"]["lr"] == 1e-4 and resolved["seeds"] == [3, 4]


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("ppo.lrr=1", "'ppo.lrr'"),  # a wrong key: named, with the close one
        ("ppo.total_frames=1000", "ppo.total_frames"),  # an impossible value
        ("ppo", "not an assignment"),
    ],
)
def test_a_bad_set_is_a_config_error(tmp_path, assignment, named):
    proc = _rl("obs-norm-stats", "--config", "configs/ci.yaml", "--seed", "0",
               "--out", str(tmp_path / "s.json"), "--set", assignment)  # fmt: skip
    assert proc.returncode == 2
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.json").exists()
