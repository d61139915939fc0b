"""The real Snakefile on configs/ci-variants.yaml (two variants x two seeds) in a temporary
copy: the variant x seed fan-out, the statistics tables, provenance on every result file,
byte-identical figures on a forced replot, the report, and reruns of only what is new."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from rl.core import config, provenance

from support.workflow import run_study, snakemake

CONFIG = "configs/ci-variants.yaml"
PAIRS = [(v, s) for v in ("tuned", "tutorial") for s in (0, 1)]


@pytest.fixture(scope="module")
def study(make_workdir):
    return run_study(make_workdir, "variants", CONFIG)


def test_jobs_fan_out_over_variant_x_seed_with_each_variants_config(study):
    _, cfg, root = study
    for variant, seed in PAIRS:
        d = root / variant / f"seed{seed}"
        for rel in ("obs_norm/stats.json", "ppo/train_metrics.csv", "eval/episodes.csv"):
            assert (d / rel).is_file(), d / rel
        rec = provenance.find(d / "ppo" / "train_metrics.csv")[1]
        resolved = config.variant_config(cfg, variant)
        assert (rec["variant"], rec["seed"]) == (variant, seed)
        assert rec["config_hash"] == config.config_hash(resolved)
        assert rec["config"]["env"]["num_envs"] == (1 if variant == "tutorial" else 2)
        metrics = pd.read_csv(d / "ppo" / "train_metrics.csv")
        assert (metrics["variant"] == variant).all()
        assert (root / "logs" / "train_ppo" / f"{variant}-seed{seed}.log").is_file()
    # the tutorial variant runs the PPO study only
    assert (root / "tuned" / "seed0" / "pendulum" / "train_metrics.csv").is_file()
    assert not (root / "tutorial" / "seed0" / "pendulum").exists()
    assert not (root / "default").exists()


def test_statistics_tables_say_which_seeds_and_how_they_were_resampled(study):
    _, cfg, root = study
    agg = root / "aggregate"
    summary = pd.read_csv(agg / "ppo_summary.csv")
    assert set(summary["variant"]) == {"tuned", "tutorial"}
    row = summary.set_index(["variant", "quantity"]).loc[("tutorial", "eval_return")]
    assert (row["n_seeds"], str(row["seeds"])) == (2, "0 1")
    assert (row["bootstrap_resamples"], row["bootstrap_seed"]) == (200, 0)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["iqm_ci_low"] <= row["iqm"] <= row["iqm_ci_high"]
    comparison = pd.read_csv(agg / "ppo_comparison.csv").iloc[0]
    assert (comparison["x"], comparison["y"], comparison["quantity"]) == (
        "tuned",
        "tutorial",
        "eval_return",
    )
    assert comparison["ci_low"] <= comparison["probability_of_improvement"] <= comparison["ci_high"]
    thresholds = pd.read_csv(agg / "ppo_frames_to_threshold.csv")
    assert sorted(zip(thresholds["variant"], thresholds["seed"], strict=True)) == PAIRS
    evals = pd.read_csv(agg / "ppo_train_eval.csv")
    for r in thresholds.itertuples():
        run_ = evals[(evals["variant"] == r.variant) & (evals["seed"] == r.seed)]
        hit = run_[run_["eval_return"] >= cfg["aggregate"]["threshold"]]["frames"]
        assert r.reached == (len(hit) > 0)
        if r.reached:
            assert r.frames_to_threshold == hit.min()
    profile = pd.read_csv(agg / "ppo_performance_profile.csv")
    assert set(profile["variant"]) == {"tuned", "tutorial"}
    assert (profile["n_seeds"] == 2).all()
    for name in ("ppo.png", "ppo.pdf", "ppo_statistics.png", "ppo_statistics.pdf"):
        assert (root / "figures" / name).stat().st_size > 1000


def test_every_result_file_has_a_provenance_record_that_matches_it(study):
    workdir, _, root = study
    checked = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or rel.parts[0] in ("mlflow", "logs")
            or path.name
            in (
                "provenance.json",
                "config.yaml",
            )
        ):
            continue
        sidecar, rec = provenance.find(path)
        assert rec["outputs"].get(path.name) == provenance.sha256(path), path
        checked += 1
    assert checked >= 40
    figure = root / "figures" / "ppo_statistics.png"
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "provenance", str(figure)],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sha256 matches" in proc.stdout and "stage / rule:    plot / plot" in proc.stdout
    # the aggregate record says where every seed ran
    rec = provenance.find(root / "aggregate" / "ppo_summary.csv")[1]
    made = {(i["made_by"]["variant"], i["made_by"]["seed"]) for i in rec["inputs"]}
    assert made == set(PAIRS)


def test_forced_replot_is_byte_identical_and_trains_nothing(study):
    workdir, _, root = study
    figures = sorted((root / "figures").rglob("*.p*"))
    before = {p: p.read_bytes() for p in figures if p.suffix in (".png", ".pdf")}
    proc = snakemake(workdir, "--configfile", CONFIG, "--forcerun", "plot", cores="1")
    log = proc.stdout + proc.stderr
    assert re.search(r"rule plot:", log) or "localrule plot:" in log
    for rule in ("train_ppo", "aggregate:", "evaluate_ppo"):
        assert f"localrule {rule}" not in log
    after = {p: p.read_bytes() for p in before}
    assert after == before


def test_report_holds_the_figures_and_tables(study):
    workdir, _, _ = study
    snakemake(workdir, "--configfile", CONFIG, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    for name in ("ppo_statistics.png", "ppo_comparison.csv", "ppo_frames_to_threshold.csv"):
        assert name in html


def test_rl_figures_rebuilds_the_dag_figures_from_its_tables(study, tmp_path):
    workdir, _, root = study
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "figures", "--from", str(root), "--out", str(tmp_path)],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in ("figures/ppo.png", "figures/ppo_statistics.pdf", "figures/pendulum/pendulum.png"):
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes(), rel
    for rel in ("aggregate/ppo_summary.csv", "aggregate/ppo_comparison.csv"):
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes(), rel


def test_adding_a_variant_or_a_seed_reruns_only_what_is_new(study, tmp_path):
    workdir, _, _ = study
    copy = tmp_path / "wf"
    shutil.copytree(workdir, copy, symlinks=True)
    with open(copy / CONFIG) as f:
        raw = yaml.safe_load(f)
    raw["seeds"] = [0, 1, 2]
    raw["variants"].append(
        {"name": "wide", "studies": ["ppo"], "overrides": {"ppo": {"num_cells": 48}}}
    )
    (copy / "configs" / "grown.yaml").write_text(yaml.safe_dump(raw))
    proc = snakemake(copy, "-n", "--configfile", "configs/grown.yaml")
    jobs = set(re.findall(r"wildcards: variant=([\w.-]+), seed=(\d+)", proc.stdout))
    new = {("wide", "0"), ("wide", "1"), ("wide", "2"), ("tuned", "2"), ("tutorial", "2")}
    assert jobs == new
    assert "mlflow_init" not in proc.stdout
    # changing a finished variant would mix two configs in its folder: refused at parse time
    raw["variants"][1]["overrides"]["ppo"]["gamma"] = 0.9
    (copy / "configs" / "changed.yaml").write_text(yaml.safe_dump(raw))
    proc = snakemake(copy, "-n", "--configfile", "configs/changed.yaml", check=False)
    assert proc.returncode != 0
    assert "tutorial:ppo.gamma" in proc.stdout + proc.stderr


def test_mlflow_runs_carry_each_variants_config_and_the_comparison(study):
    from mlflow.tracking import MlflowClient

    _, cfg, root = study
    marker = json.loads((root / "mlflow" / "initialised.json").read_text())
    client = MlflowClient(marker["tracking_uri"])
    runs = client.search_runs([marker["experiment_id"]], max_results=1000)
    train = {
        r.data.tags["rl.variant"]: r for r in runs if r.data.tags.get("rl.stage") == "train_ppo"
    }
    assert set(train) == {"tuned", "tutorial"}
    assert train["tutorial"].data.params["env.num_envs"] == "1"
    assert train["tuned"].data.params["env.num_envs"] == "2"
    (agg,) = [r for r in runs if r.data.tags.get("rl.stage") == "aggregate"]
    poi = agg.data.metrics["poi.tuned_vs_tutorial.eval_return"]
    table = pd.read_csv(root / "aggregate" / "ppo_comparison.csv").iloc[0]
    assert poi == pytest.approx(table["probability_of_improvement"])
    assert "tutorial.eval_return.mean" in agg.data.metrics
