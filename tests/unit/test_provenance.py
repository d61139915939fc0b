"""Provenance records: written by one function, found and printed for any result file."""

import json
import subprocess
import sys

import pytest

from rl.core import config, provenance


@pytest.fixture
def cfg(ci_config):
    return config.validate(ci_config)


def test_record_lists_every_output_with_its_hash_and_the_resolved_config(tmp_path, cfg):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"state")  # in-progress state, not a result
    (tmp_path / ".a.csv.123.tmp").write_text("torn")
    rec = provenance.write(tmp_path, cfg, stage="aggregate", seed=None, variant=None)
    assert set(rec["outputs"]) == {"a.csv"}
    assert rec["outputs"]["a.csv"] == provenance.sha256(tmp_path / "a.csv")
    assert rec["config"] == cfg and rec["config_hash"] == config.config_hash(cfg)
    for key in ("git_commit", "git_dirty", "versions", "device", "host", "started_utc"):
        assert key in rec
    assert rec["versions"]["scipy"] != "absent"
    on_disk = json.loads((tmp_path / "provenance.json").read_text())
    assert on_disk["outputs"] == rec["outputs"]


def test_inputs_carry_where_each_seed_ran(tmp_path, cfg):
    seed_dir = tmp_path / "tuned" / "seed3" / "eval"
    seed_dir.mkdir(parents=True)
    (seed_dir / "episodes.csv").write_text("return\n1\n")
    provenance.write(seed_dir, cfg, stage="evaluate_ppo", seed=3, variant="tuned")
    out = tmp_path / "aggregate"
    out.mkdir()
    (out / "s.csv").write_text("y\n")
    rec = provenance.write(out, cfg, stage="aggregate", inputs=[seed_dir / "episodes.csv"])
    made_by = rec["inputs"][0]["made_by"]
    assert (made_by["stage"], made_by["variant"], made_by["seed"]) == ("evaluate_ppo", "tuned", 3)
    assert made_by["host"] and made_by["device"] == "cpu"


def test_describe_checks_the_file_against_the_record(tmp_path, cfg):
    table = tmp_path / "summary.csv"
    table.write_text("a\n1\n")
    provenance.write(tmp_path, cfg, stage="aggregate")
    text = provenance.describe(table)
    assert "sha256 matches" in text and f"config hash:     {config.config_hash(cfg)}" in text
    table.write_text("a\n2\n")
    assert "CHANGED since the record" in provenance.describe(table)
    (tmp_path / "later.csv").write_text("b\n")
    assert "NOT listed" in provenance.describe(tmp_path / "later.csv")


def test_a_file_without_a_record_gets_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="No provenance record for .*x.csv"):
        provenance.describe(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        provenance.describe(tmp_path / "nothing.csv")


def test_cli_prints_provenance_of_a_figure(tmp_path, cfg):
    fig = tmp_path / "ppo.png"
    fig.write_bytes(b"\x89PNG fake")
    provenance.write(tmp_path, cfg, stage="plot")
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "provenance", str(fig)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "stage / rule:    plot / plot" in proc.stdout and "git commit:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "provenance", "--json", str(fig)],
        capture_output=True,
        text=True,
    )
    assert json.loads(proc.stdout)["outputs"]["ppo.png"] == provenance.sha256(fig)
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "provenance", str(tmp_path / "nope.png")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "does not exist" in proc.stderr
