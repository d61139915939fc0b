"""The real Snakefile on configs/ci-compare.yaml (PPO and BPTT on Pendulum-v1, two seeds
each, tiny budgets) in a temporary copy: snapshots on the grid, one evaluator for both
methods, the gradient probe, the comparison's tables and figures, provenance everywhere,
a no-op rerun, the same numbers when a job is rerun, and `figures` rebuilding the
comparison byte for byte from its tidy tables."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from rl.compare.stages import aggregate_compare_rows, gradient_rows, snapshot_rows
from rl.core import config, provenance

from support.workflow import run_study, snakemake

CONFIG = "configs/ci-compare.yaml"
VARIANTS = {"ppo": "ppo", "bptt": "pendulum"}


def rl(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rl", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def study(make_workdir):
    return run_study(make_workdir, "compare", CONFIG)


def test_every_variant_snapshots_and_is_scored_by_the_one_evaluator(study):
    _, cfg, root = study
    c = cfg["compare"]
    for variant, trained_by in VARIANTS.items():
        vcfg = config.variant_config(cfg, variant)
        total = (
            vcfg["ppo"]["total_frames"]
            if trained_by == "ppo"
            else vcfg["pendulum"]["iterations"]
            * vcfg["pendulum"]["batch_size"]
            * vcfg["pendulum"]["horizon"]
        )
        grid = list(range(0, total + 1, c["snapshot_every"]))
        for seed in cfg["seeds"]:
            d = root / variant / f"seed{seed}"
            assert (d / trained_by / "snapshots.pt").is_file()
            episodes = pd.read_csv(d / "compare" / "episodes.csv")
            assert sorted(episodes["sim_steps"].unique()) == grid
            assert len(episodes) == len(grid) * c["episodes"]
            assert (episodes["length"] == 200).all()
            assert episodes["reset_seed"].nunique() == c["episodes"]
            rec = provenance.find(d / "compare" / "episodes.csv")[1]
            assert (rec["stage"], rec["variant"], rec["seed"]) == (
                "evaluate_snapshots",
                variant,
                seed,
            )
            assert rec["inputs"][0]["path"].endswith("snapshots.pt")
            assert snapshot_rows(episodes)[0][0] == 0
    # the same starts for both methods at a seed
    a = pd.read_csv(root / "ppo" / "seed1" / "compare" / "episodes.csv")
    b = pd.read_csv(root / "bptt" / "seed1" / "compare" / "episodes.csv")
    assert set(a["reset_seed"]) == set(b["reset_seed"])
    grads = pd.read_csv(root / "bptt" / "seed0" / "gradients" / "gradients.csv")
    assert sorted(grads["horizon"].unique()) == sorted(c["probe_horizons"])
    assert set(grads["sim_steps"]) == set(c["budgets"])
    assert gradient_rows(grads)[0][1]["grad_norm.h8"] > 0
    assert not (root / "ppo" / "seed0" / "gradients").exists()


def test_the_comparison_tables_and_figures(study):
    _, cfg, root = study
    agg = root / "aggregate" / "compare"
    summary = pd.read_csv(agg / "summary.csv")
    assert set(summary["variant"]) == set(VARIANTS)
    assert {"final_return", "return_at_512", "total_wall_s"} <= set(summary["quantity"])
    poi = pd.read_csv(agg / "improvement.csv")
    assert poi["quantity"].tolist() == ["return_at_512", "return_at_2048", "final_return"]
    assert ((poi["ci_low"] <= poi["probability_of_improvement"]) & (poi["ci_high"] >= 0)).all()
    curves = pd.read_csv(agg / "curves.csv")
    assert set(curves["axis"]) == {"sim_steps", "grad_steps", "wall_s"}
    assert (curves.groupby(["variant", "axis"]).size().loc[(slice(None), "wall_s")] == 11).all()
    assert len(pd.read_csv(agg / "first_to_threshold.csv")) == 2 * 3  # thresholds x axes
    metrics = aggregate_compare_rows(agg)[0][1]
    assert "poi.ppo_vs_bptt.return_at_512" in metrics
    for name in ("compare", "gradients"):
        png = Image.open(root / "figures" / "compare" / f"{name}.png")
        assert png.size == (7 * cfg["plot"]["dpi"], 5 * cfg["plot"]["dpi"])
        assert len(set(png.convert("L").get_flattened_data())) > 10
    rec = json.loads((root / "figures" / "compare" / "provenance.json").read_text())
    assert rec["stage"] == "plot_compare" and "compare.png" in rec["outputs"]


def test_a_rerun_does_nothing_and_a_rerun_job_gives_the_same_numbers(study, tmp_path):
    workdir, _, root = study
    proc = snakemake(workdir, "--configfile", CONFIG, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    again = tmp_path / "episodes.csv"
    rl(
        workdir,
        *("evaluate-snapshots", "--config", "results/ci-compare/config.yaml"),
        *("--seed", "0", "--variant", "bptt", "--out", str(again)),
        *("--snapshots", "results/ci-compare/bptt/seed0/pendulum/snapshots.pt"),
    )
    first = root / "bptt" / "seed0" / "compare" / "episodes.csv"
    assert again.read_bytes() == first.read_bytes()


def test_figures_rebuilds_the_comparison_byte_for_byte(study, tmp_path):
    workdir, _, root = study
    ref = tmp_path / "reference"
    rl(workdir, "export-reference", "--config", str(root / "config.yaml"), "--to", str(ref))
    out = tmp_path / "rebuilt"
    rl(workdir, "figures", "--from", str(ref), "--out", str(out))
    made = sorted((root / "aggregate" / "compare").glob("*.csv"))
    made += sorted((root / "figures" / "compare").glob("*.p[nd][gf]"))
    assert len(made) >= 14
    for path in made:
        rel = path.relative_to(root)
        assert (out / rel).read_bytes() == path.read_bytes(), f"{rel} differs"
