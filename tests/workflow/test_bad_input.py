"""The bad-input matrix: each case runs the real entry point (snakemake on the real Snakefile,
or a `python -m rl` verb with the same line as its rule) against a finished ci study, and
asserts the exit status, that the one-paragraph message names the problem and the fix, and
that every file of the earlier results is byte-for-byte what it was."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

STUDY = Path("results/ci")
SEED0 = STUDY / "default" / "seed0"
STATS = SEED0 / "obs_norm" / "stats.json"
POLICY = SEED0 / "ppo" / "policy.pt"
EPISODES = SEED0 / "eval" / "episodes.csv"
SUMMARY = SEED0 / "eval" / "summary.json"


@pytest.fixture(scope="module")
def study(ci_study, tmp_path_factory) -> Path:
    """A private copy of the finished ci study: cases run in it and must leave it as it was."""
    src, _, _ = ci_study
    dst = tmp_path_factory.mktemp("bad-input") / "wf"
    shutil.copytree(src, dst, symlinks=True)
    return dst


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_config(workdir: Path, name: str, edit: Callable[[dict], None] | None = None) -> str:
    cfg = yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())
    if edit:
        edit(cfg)
    path = workdir / "bad" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path.relative_to(workdir))


def snakemake(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "1", *args]


def rl(verb: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rl", verb, *args]


def set_key(dotted: str, value) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        *parents, last = dotted.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def new_study(name: str, *edits: Callable[[dict], None]) -> Callable[[dict], None]:
    """A separate study beside ci (so the mixing guard does not answer first)."""

    def edit(cfg: dict) -> None:
        cfg["study"] = name
        for e in edits:
            e(cfg)

    return edit


@dataclass
class Case:
    id: str
    command: Callable[[Path], list[str]]
    status: int
    says: tuple[str, ...]  # substrings of the message: the problem, the key, the fix
    env: dict = field(default_factory=dict)
    traceback_ok: bool = False  # Snakemake's own file errors print one (upstream)
    after: Callable[[Path], None] | None = None  # extra checks


def sm_config(name: str, edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    return lambda wd: snakemake("--configfile", write_config(wd, name, edit))


def _yaml_error(wd: Path) -> str:
    path = wd / "bad" / "syntax.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("study: ci\nseeds: [0, 1\nppo:\n  lr: 0.001\n")
    return "bad/syntax.yaml"


def _corrupt(wd: Path, name: str, data: bytes) -> str:
    path = wd / "bad" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path.relative_to(wd))


def _evaluate(policy: Callable[[Path], str], config: str = "configs/ci.yaml"):
    def command(wd: Path) -> list[str]:
        return rl(
            "evaluate-ppo",
            "--config",
            config if config.startswith("configs/") else write_config(wd, config, BIG_NET),
            "--seed",
            "0",
            "--policy",
            policy(wd),
            "--obs-stats",
            str(STATS),
            "--episodes-out",
            str(EPISODES),
            "--summary-out",
            str(SUMMARY),
        )

    return command


def _train(config: Callable[[Path], str], stats: Callable[[Path], str], out_dir: str) -> Callable:
    def command(wd: Path) -> list[str]:
        return rl(
            "train-ppo",
            "--config",
            config(wd),
            "--seed",
            "0",
            "--obs-stats",
            stats(wd),
            "--out-dir",
            out_dir,
        )

    return command


BIG_NET = new_study("ci-bignet", set_key("ppo.num_cells", 64))
MALICIOUS_MARKER = "pwned-by-pickle"


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MALICIOUS_MARKER}",))


def _no_marker(name: str) -> Callable[[Path], None]:
    def check(wd: Path) -> None:
        assert not (wd / name).exists(), f"{name} was created: the payload ran"

    return check


CASES = [
    Case(
        "unknown-key-did-you-mean",
        sm_config("unknown", set_key("ppo.learning_rate", 0.001)),
        1,
        ("ppo.learning_rate", "did you mean 'lr'"),
    ),
    Case(
        "misspelt-key-did-you-mean",
        sm_config("misspelt", set_key("ppo.num_epoch", 3)),
        1,
        ("ppo.num_epoch", "did you mean 'num_epochs'"),
    ),
    Case(
        "wrong-type",
        sm_config("type", set_key("ppo.total_frames", "many")),
        1,
        ("ppo.total_frames", "integer"),
    ),
    Case(
        "frames-not-positive",
        sm_config("frames", set_key("ppo.total_frames", 0)),
        1,
        ("ppo.total_frames", "minimum"),
    ),
    Case(
        "batch-not-dividing-frames",
        sm_config("divide", set_key("ppo.total_frames", 2000)),
        1,
        ("ppo.total_frames", "multiple of ppo.frames_per_batch", "whole number of batches"),
    ),
    Case(
        "minibatch-larger-than-batch",
        sm_config("minibatch", set_key("ppo.minibatch_size", 1024)),
        1,
        ("ppo.minibatch_size", "larger than", "no larger than the batch"),
    ),
    Case("no-seeds", sm_config("noseeds", set_key("seeds", [])), 1, ("seeds",)),
    Case(
        "duplicate-seeds",
        sm_config("dupseeds", set_key("seeds", [0, 0])),
        1,
        ("seeds", "unique"),
    ),
    Case(
        "negative-learning-rate",
        sm_config("lr", set_key("ppo.lr", -0.001)),
        1,
        ("ppo.lr",),
    ),
    Case(
        "unknown-gymnasium-id",
        sm_config("gymid", set_key("env.id", "InvertedDoublePendulum-v9")),
        1,
        ("InvertedDoublePendulum-v9", "env.id", "InvertedDoublePendulum-v5"),
    ),
    Case(
        "missing-config-file",
        lambda wd: rl("validate-config", "--config", "configs/nope.yaml"),
        2,
        ("configs/nope.yaml", "does not exist", "configs/default.yaml"),
    ),
    Case(
        "missing-config-file-snakemake",
        lambda wd: snakemake("--configfile", "configs/nope.yaml"),
        1,
        ("No such file or directory: 'configs/nope.yaml'",),
        traceback_ok=True,
    ),
    Case(
        "yaml-syntax-error-line",
        lambda wd: rl("validate-config", "--config", _yaml_error(wd)),
        2,
        ("bad/syntax.yaml", "not valid YAML at line 3", "Fix the syntax"),
    ),
    Case(
        "yaml-syntax-error-snakemake",
        lambda wd: snakemake("--configfile", _yaml_error(wd)),
        1,
        ("not valid JSON or YAML",),
    ),
    Case(
        "cuda-without-gpu",
        _train(
            lambda wd: write_config(wd, "cuda", new_study("ci-cuda", set_key("device", "cuda"))),
            lambda wd: str(STATS),
            "results/ci-cuda/default/seed0/ppo",
        ),
        1,
        ("device", "cuda", "no CUDA device", "device: auto"),
        env={"CUDA_VISIBLE_DEVICES": ""},
    ),
    Case(
        "missing-obs-norm",
        _train(lambda wd: "configs/ci.yaml", lambda wd: "bad/none.json", str(SEED0 / "ppo")),
        1,
        ("Missing observation statistics", "bad/none.json"),
    ),
    Case(
        "corrupt-obs-norm",
        _train(
            lambda wd: "configs/ci.yaml",
            lambda wd: _corrupt(wd, "stats.json", b'{"loc": [0.0, '),
            str(SEED0 / "ppo"),
        ),
        1,
        ("bad/stats.json", "not valid JSON", "rerun the rule"),
    ),
    Case(
        "truncated-checkpoint",
        _evaluate(lambda wd: _corrupt(wd, "trunc.pt", (wd / POLICY).read_bytes()[:300])),
        1,
        ("trunc.pt", "corrupt, truncated", "rerun the rule"),
    ),
    Case(
        "corrupt-checkpoint",
        _evaluate(lambda wd: _corrupt(wd, "noise.pt", os.urandom(4096))),
        1,
        ("noise.pt", "corrupt"),
    ),
    Case(
        "malicious-pickle-refused",
        _evaluate(lambda wd: _corrupt(wd, "evil.pt", pickle.dumps(_Payload()))),
        1,
        ("evil.pt",),
        after=_no_marker(MALICIOUS_MARKER),
    ),
    Case(
        "checkpoint-from-another-config",
        _evaluate(lambda wd: str(POLICY), config="bignet"),
        1,
        ("policy.pt", "num_cells"),
    ),
    Case(
        "resume-under-another-config",
        _train(
            lambda wd: write_config(wd, "otherlr", set_key("ppo.lr", 0.01)),
            lambda wd: str(STATS),
            str(SEED0 / "ppo"),
        ),
        2,
        ("already has results made with a different config", "ppo.lr", "new 'study' name"),
    ),
    Case(
        "mixing-configs-in-one-study",
        sm_config("mix", set_key("ppo.lr", 0.01)),
        1,
        ("already has results made with a different config", "ppo.lr", "new 'study' name"),
    ),
    Case(
        "unreachable-mlflow-server",
        lambda wd: rl(
            "mlflow-init",
            "--config",
            write_config(
                wd,
                "remote",
                new_study(
                    "ci-remote",
                    set_key("mlflow.tracking_uri", "http://127.0.0.1:9"),
                    set_key("mlflow.health_check_seconds", 3),
                ),
            ),
            "--marker",
            "results/ci-remote/mlflow/initialised.json",
        ),
        1,
        ("http://127.0.0.1:9", "Start the server or fix the URI"),
        after=lambda wd: _assert_absent(wd / "results/ci-remote/mlflow/initialised.json"),
    ),
    Case(
        "results-dir-is-a-file",
        lambda wd: snakemake(
            "--configfile",
            write_config(
                wd, "notadir", new_study("ci-x", set_key("results_dir", "bad/afile/results"))
            ),
        ),
        1,
        ("bad/afile",),
    ),
    Case(
        "nan-in-training",
        _train(
            lambda wd: write_config(wd, "nan", new_study("ci-nan", set_key("ppo.lr", 1e30))),
            lambda wd: str(STATS),
            "results/ci-nan/default/seed0/ppo",
        ),
        1,
        ("diverged at frame", "checkpoint"),
    ),
    Case(
        "shell-metacharacters-in-study-name",
        lambda wd: snakemake(
            "--configfile", write_config(wd, "shell", set_key("study", "ci$(touch pwned-by-shell)"))
        ),
        1,
        ("study", "does not match"),
        after=_no_marker("pwned-by-shell"),
    ),
    Case(
        "shell-metacharacters-in-seed",
        lambda wd: snakemake(
            "--configfile",
            write_config(wd, "shellseed", set_key("seeds", ["0; touch pwned-by-seed"])),
        ),
        1,
        ("seeds", "integer"),
        after=_no_marker("pwned-by-seed"),
    ),
]


def _assert_absent(path: Path) -> None:
    assert not path.exists(), f"{path} exists after a failed job"


def _prepare_file_in_the_way(wd: Path) -> None:
    (wd / "bad").mkdir(exist_ok=True)
    (wd / "bad" / "afile").write_text("a file where the results folder should be\n")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(study: Path, case: Case):
    _prepare_file_in_the_way(study)
    before = snapshot(study / STUDY)
    t0 = time.monotonic()
    proc = subprocess.run(
        case.command(study),
        cwd=study,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **case.env},
    )
    elapsed = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.status, f"exit {proc.returncode}:\n{output[-3000:]}"
    for text in case.says:
        assert text.lower() in output.lower(), f"{text!r} not in:\n{output[-3000:]}"
    if not case.traceback_ok:
        assert "Traceback" not in output, output[-3000:]
    assert snapshot(study / STUDY) == before, "earlier results changed"
    if case.after:
        case.after(study)
    if case.id == "unreachable-mlflow-server":
        assert elapsed < 60, f"took {elapsed:.0f} s to notice an unreachable server"


def test_matrix_is_big_enough():
    assert len(CASES) >= 20


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs: a real full disk (root only; CI runs as root)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs")
def test_full_disk_while_writing(study: Path, small_tmpfs: Path):
    """Training into a disk that fills up: a clear error, no torn file, earlier files intact."""
    out = small_tmpfs / "ppo"
    out.mkdir()
    keep = out / "earlier.txt"
    keep.write_text("an earlier result\n")
    # leave about 40 KiB: the first checkpoint (weights and Adam state) does not fit
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (200 * 1024))
    proc = subprocess.run(
        rl(
            "train-ppo",
            "--config",
            "configs/ci.yaml",
            "--seed",
            "0",
            "--obs-stats",
            str(STATS),
            "--out-dir",
            str(out),
        ),  # fmt: skip
        cwd=study,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "No space left on the device" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert keep.read_text() == "an earlier result\n"
    leftovers = sorted(p.name for p in out.iterdir())
    assert leftovers == ["earlier.txt"], f"half-written files left: {leftovers}"


@pytest.fixture
def readonly_dir(tmp_path):
    """A read-only mount (root ignores file modes, so chmod alone proves nothing as root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "earlier.txt").write_text("an earlier result\n")
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    proc = subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot make a read-only bind mount: {proc.stderr.decode().strip()}")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    yield ro
    subprocess.run(["umount", "-l", str(ro)])


def test_unwritable_results_dir(study: Path, readonly_dir: Path):
    proc = subprocess.run(
        rl(
            "obs-norm-stats",
            "--config",
            "configs/ci.yaml",
            "--seed",
            "0",
            "--out",
            str(readonly_dir / "stats.json"),
        ),  # fmt: skip
        cwd=study,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Cannot write" in proc.stderr and "writable" in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["earlier.txt"]


def test_ctrl_c_exits_cleanly_and_resumes(study: Path):
    """SIGINT during training: exit 130 with a message, the checkpoint kept, and the same
    command resumes from it."""
    cfg = write_config(
        study,
        "ctrlc",
        new_study(
            "ci-ctrlc",
            set_key("ppo.total_frames", 16384),
            set_key("ppo.checkpoint_interval_frames", 1024),
        ),
    )
    out = "results/ci-ctrlc/default/seed0/ppo"
    cmd = rl("train-ppo", "--config", cfg, "--seed", "0", "--obs-stats", str(STATS),
             "--out-dir", out)  # fmt: skip
    ckpt = study / out / "checkpoint.pt"
    # a shell's background job (`cmd &` without job control, nohup) ignores SIGINT and its
    # children inherit that, so Python installs no Ctrl-C handler: the child gets the default
    proc = subprocess.Popen(
        cmd,
        cwd=study,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with contextlib.ExitStack() as stack:
        stack.callback(proc.kill)
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint was written"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "rerun the same command" in err, err[-3000:]
    assert "Traceback" not in err
    assert ckpt.exists() and not (study / out / "policy.pt").exists()
    again = subprocess.run(cmd, cwd=study, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resum" in again.stderr.lower(), again.stderr[-3000:]
    assert (study / out / "policy.pt").exists()
