"""The real Snakefile, run by the real snakemake on configs/ci.yaml in a temporary copy."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from support.workflow import snakemake


@pytest.fixture(scope="module")
def workdir(ci_study) -> Path:
    return ci_study[0]


@pytest.fixture(scope="module")
def ci_run(ci_study):
    """The ci study, run once per session (tests/conftest.py) and shared with the MLflow
    UI and sync tests."""
    return ci_study


def test_every_output_exists_and_is_well_formed(ci_run):
    workdir, cfg, _ = ci_run
    study = workdir / "results" / "ci"
    n_batches = cfg["ppo"]["total_frames"] // cfg["ppo"]["frames_per_batch"]
    n_evals = cfg["ppo"]["total_frames"] // cfg["ppo"]["eval_interval_frames"]
    for seed in cfg["seeds"]:
        d = study / "default" / f"seed{seed}"
        stats = json.loads((d / "obs_norm" / "stats.json").read_text())
        assert len(stats["loc"]) == len(stats["scale"]) == 9
        assert stats["count"] == cfg["obs_norm"]["steps"]
        assert all(s > 0 for s in stats["scale"])
        metrics = pd.read_csv(d / "ppo" / "train_metrics.csv")
        assert len(metrics) == n_batches
        assert metrics["frames"].tolist() == [
            cfg["ppo"]["frames_per_batch"] * (i + 1) for i in range(n_batches)
        ]
        for col in (
            "train_reward_mean",
            "train_max_episode_length",
            "loss_objective",
            "loss_critic",
            "lr",
            "frames_per_s",
            "seed",
            "variant",
        ):
            assert col in metrics.columns
            assert metrics[col].notna().all()
        evals = pd.read_csv(d / "ppo" / "train_eval.csv")
        assert len(evals) == n_evals
        assert {"frames", "eval_return", "eval_episode_length"} <= set(evals.columns)
        episodes = pd.read_csv(d / "eval" / "episodes.csv")
        assert len(episodes) == cfg["evaluation"]["episodes"]
        assert (episodes["length"] >= 1).all()
        summary = json.loads((d / "eval" / "summary.json").read_text())
        assert summary["return_mean"] == pytest.approx(episodes["return"].mean())
        assert (d / "ppo" / "policy.pt").stat().st_size > 0
        assert not (d / "ppo" / "checkpoint.pt").exists()
        prov = json.loads((d / "ppo" / "provenance.json").read_text())
        for key in ("git_commit", "config_hash", "versions", "device", "rule", "seed"):
            assert key in prov
        assert prov["rule"] == "train_ppo" and prov["seed"] == seed
        for rule in ("obs_norm_stats", "train_ppo", "evaluate_ppo"):
            assert (study / "logs" / rule / f"default-seed{seed}.log").is_file()
    log = (study / "logs" / "train_ppo" / "default-seed0.log").read_text()
    assert "frames/s" in log and "ETA" in log

    summary = pd.read_csv(study / "aggregate" / "ppo_summary.csv")
    row = summary.set_index("quantity").loc["eval_return"]
    assert row["n_seeds"] == len(cfg["seeds"])
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    tidy = pd.read_csv(study / "aggregate" / "ppo_train.csv")
    assert len(tidy) == n_batches * len(cfg["seeds"])

    png = Image.open(study / "figures" / "ppo.png")
    assert png.size == (
        cfg["plot"].get("width_in", 7.0) * cfg["plot"]["dpi"],
        cfg["plot"].get("height_in", 5.0) * cfg["plot"]["dpi"],
    )
    assert len(set(png.convert("L").get_flattened_data())) > 10  # not blank
    assert (study / "figures" / "ppo.pdf").read_bytes()[:5] == b"%PDF-"


def test_pendulum_outputs_exist_and_are_well_formed(ci_run):
    workdir, cfg, _ = ci_run
    study = workdir / "results" / "ci"
    p = cfg["pendulum"]
    n_starts, n_steps = len(p["eval_starts"]), p["eval_steps"]
    for seed in cfg["seeds"]:
        d = study / "default" / f"seed{seed}" / "pendulum"
        metrics = pd.read_csv(d / "train_metrics.csv")
        assert metrics["iteration"].tolist() == list(range(1, p["iterations"] + 1))
        for col in ("return", "final_step_reward", "grad_norm", "lr", "iters_per_s"):
            assert metrics[col].notna().all() and (metrics["seed"] == seed).all()
        evals = pd.read_csv(d / "eval_trajectories.csv")
        assert len(evals) == n_starts * n_steps
        assert {"start", "time_s", "angle", "speed", "torque", "reward"} <= set(evals.columns)
        assert (d / "policy.pt").stat().st_size > 0
        assert not (d / "checkpoint.pt").exists()
        prov = json.loads((d / "provenance.json").read_text())
        assert prov["rule"] == "train_pendulum" and prov["seed"] == seed
        assert prov["iterations"] == p["iterations"]
        assert (study / "logs" / "train_pendulum" / f"default-seed{seed}.log").is_file()
    log = (study / "logs" / "train_pendulum" / "default-seed0.log").read_text()
    assert "iterations/s" in log and "final-step reward" in log

    agg = study / "aggregate" / "pendulum"
    tidy = pd.read_csv(agg / "train.csv")
    assert len(tidy) == p["iterations"] * len(cfg["seeds"])
    curves = pd.read_csv(agg / "train_curves.csv")
    assert set(curves["metric"]) == {"return", "final_step_reward", "grad_norm"}
    assert (curves["n_seeds"] == len(cfg["seeds"])).all()
    eval_curves = pd.read_csv(agg / "eval_curves.csv")
    assert len(eval_curves[eval_curves["metric"] == "torque"]) == n_starts * n_steps
    summary = pd.read_csv(agg / "summary.csv").set_index("quantity")
    row = summary.loc["final_step_reward"]
    assert row["n_seeds"] == len(cfg["seeds"])
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert json.loads((agg / "provenance.json").read_text())["stage"] == "aggregate_pendulum"

    png = Image.open(study / "figures" / "pendulum" / "pendulum.png")
    assert png.size == (
        cfg["plot"].get("width_in", 7.0) * cfg["plot"]["dpi"],
        cfg["plot"].get("height_in", 5.0) * cfg["plot"]["dpi"],
    )
    assert len(set(png.convert("L").get_flattened_data())) > 10  # not blank
    assert (study / "figures" / "pendulum" / "pendulum.pdf").read_bytes()[:5] == b"%PDF-"


def test_mlflow_holds_every_stage_of_every_seed(ci_run):
    from mlflow.tracking import MlflowClient

    workdir, cfg, _ = ci_run
    marker = json.loads((workdir / "results" / "ci" / "mlflow" / "initialised.json").read_text())
    client = MlflowClient(marker["tracking_uri"])
    runs = client.search_runs([marker["experiment_id"]], max_results=1000)
    stages = [r for r in runs if r.data.tags.get("rl.kind") == "stage"]
    by_stage = {}
    for run in stages:
        by_stage.setdefault(run.data.tags["rl.stage"], []).append(run)
        assert run.info.status == "FINISHED"
    n = len(cfg["seeds"])
    assert {k: len(v) for k, v in by_stage.items()} == {
        "obs_norm_stats": n,
        "train_ppo": n,
        "evaluate_ppo": n,
        "aggregate": 1,
        "plot": 1,
        "train_pendulum": n,
        "animate_pendulum": n,
        "aggregate_pendulum": 1,
        "plot_pendulum": 1,
    }
    parents = set(marker["parents"].values())
    for run in by_stage["train_ppo"]:
        assert run.data.tags["mlflow.parentRunId"] in parents
        assert run.data.params["ppo.clip_epsilon"] == "0.2"
        assert run.data.tags["rl.snakemake_rule"] == "train_ppo"
        history = client.get_metric_history(run.info.run_id, "train_reward_mean")
        assert len(history) == cfg["ppo"]["total_frames"] // cfg["ppo"]["frames_per_batch"]
        assert sorted(m.step for m in history)[-1] == cfg["ppo"]["total_frames"]
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"train_metrics.csv", "train_eval.csv", "provenance.json", "config"} <= files
        assert run.data.tags["rl.model_uri"].startswith("models:/")
    study_parent = marker["parents"]["study"]
    for stage in ("aggregate", "plot"):
        (run,) = by_stage[stage]
        assert run.data.tags["mlflow.parentRunId"] == study_parent
    (plot,) = by_stage["plot"]
    assert {"ppo.png", "ppo.pdf"} <= {f.path for f in client.list_artifacts(plot.info.run_id)}
    (agg,) = by_stage["aggregate"]
    assert "eval_return.mean" in agg.data.metrics
    p = cfg["pendulum"]
    for run in by_stage["train_pendulum"]:
        assert run.data.tags["mlflow.parentRunId"] in parents
        assert run.data.params["pendulum.horizon"] == str(p["horizon"])
        history = client.get_metric_history(run.info.run_id, "final_step_reward")
        assert sorted(m.step for m in history) == [
            i * p["batch_size"] * p["horizon"] for i in range(1, p["iterations"] + 1)
        ]
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"train_metrics.csv", "eval_trajectories.csv", "provenance.json"} <= files
    for stage in ("aggregate_pendulum", "plot_pendulum"):
        (run,) = by_stage[stage]
        assert run.data.tags["mlflow.parentRunId"] == study_parent
    (plot,) = by_stage["plot_pendulum"]
    files = {f.path for f in client.list_artifacts(plot.info.run_id)}
    assert {"pendulum.png", "pendulum.pdf"} <= files
    (agg,) = by_stage["aggregate_pendulum"]
    assert "final_step_reward.mean" in agg.data.metrics


def test_videos_exist_for_every_seed_and_reach_mlflow(ci_run):
    from mlflow.tracking import MlflowClient

    from rl.analysis.video import probe

    workdir, cfg, _ = ci_run
    study = workdir / "results" / "ci"
    video = cfg["video"]
    for seed in cfg["seeds"]:
        d = study / "default" / f"seed{seed}"
        episodes = pd.read_csv(d / "eval" / "episodes.csv")
        manifest = json.loads((d / "eval" / "videos.json").read_text())
        assert set(manifest["videos"]) == {"first", "worst"}
        assert manifest["videos"]["worst"]["return"] == episodes["return"].min()
        for name, row in manifest["videos"].items():
            info = probe(d / "eval" / f"episode-{name}.mp4")
            assert info["codec"] == "h264" and info["size"] == (video["width"], video["height"])
            assert info["frames"] == row["frames"] == min(row["length"], video["max_frames"])
            assert Image.open(d / "eval" / f"episode-{name}.gif").n_frames >= 1
        anim = d / "pendulum" / "animation"
        info = probe(anim / "animation.mp4")
        assert info["frames"] == min(cfg["pendulum"]["eval_steps"], video["max_frames"])
        assert Image.open(anim / "animation.gif").n_frames >= 2
        assert json.loads((anim / "provenance.json").read_text())["rule"] == "animate_pendulum"
    marker = json.loads((study / "mlflow" / "initialised.json").read_text())
    client = MlflowClient(marker["tracking_uri"])
    runs = client.search_runs([marker["experiment_id"]], max_results=1000)
    for run in runs:
        stage = run.data.tags.get("rl.stage")
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        if stage == "evaluate_ppo":
            assert {"episode-first.mp4", "episode-worst.mp4", "videos.json"} <= files
            assert {"episode-first.gif", "episode-worst.gif"} <= files
        if stage == "animate_pendulum":
            assert {"animation.mp4", "animation.gif", "provenance.json"} <= files


def test_report_holds_the_videos_with_captions(ci_run, tmp_path):
    import zipfile

    workdir, cfg, _ = ci_run
    report = tmp_path / "report.zip"
    snakemake(workdir, "--configfile", "configs/ci.yaml", "--report", str(report))
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        html = z.read(next(n for n in names if n.endswith("report.html"))).decode()
    n = len(cfg["seeds"])
    for video in ("episode-first.mp4", "episode-worst.mp4", "animation.mp4"):
        assert sum(name.endswith("/" + video) for name in names) == n, names
    assert "The worst evaluation episode (lowest return)" in html
    assert "The learned pendulum controller" in html


def test_second_run_does_nothing(ci_run):
    workdir, _, _ = ci_run
    proc = snakemake(workdir, "--configfile", "configs/ci.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean(ci_run):
    workdir, _, _ = ci_run
    proc = snakemake(workdir, "--configfile", "configs/ci.yaml", "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_a_dry_run_lint_or_dag_writes_nothing_under_results(make_workdir):
    """Planning writes nothing: the resolved config is written when the workflow starts to
    run (an onstart hook), not while the Snakefile is parsed."""
    workdir = make_workdir("dry")
    results = workdir / "results"

    def files():
        return (
            sorted(p.relative_to(workdir) for p in results.rglob("*")) if results.exists() else []
        )

    before = files()
    for flags in (["-n"], ["--lint"], ["--dag"]):
        proc = snakemake(workdir, "--configfile", "configs/ci.yaml", *flags)
        assert files() == before, (flags, proc.stdout[-2000:])
    assert "train_ppo" in proc.stdout  # the DAG was drawn: the parse ran to the end


def test_bad_config_stops_before_any_job(workdir, tmp_path):
    with open(workdir / "configs" / "ci.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["study"] = "broken"
    cfg["ppo"]["clip_epsilon"] = "wide"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "'ppo.clip_epsilon'" in proc.stdout + proc.stderr
    assert not (workdir / "results" / "broken" / "default").exists()


def test_jobs_read_exactly_the_given_study_config(ci_run):
    """--configfile must not inherit the default study's values (Snakemake merges a
    `configfile:` directive under it; our Snakefile has none for that reason)."""
    from rl.core import config

    workdir, _, _ = ci_run
    resolved = yaml.safe_load((workdir / "results" / "ci" / "config.yaml").read_text())
    assert resolved == config.load(workdir / "configs" / "ci.yaml")
