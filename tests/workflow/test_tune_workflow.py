"""The real Snakefile on configs/ci-tune.yaml: a tiny search (4 trials, 2 tune_worker jobs
on one journal file), its report, and the winner confirmed beside the base recipe on two
seeds; a worker killed in a trial leaves it to the next worker, which retries it from its
checkpoint."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from rl.core import config, provenance, tuning

from support.mlflow_records import records
from support.workflow import run_study, snakemake

CONFIG = "configs/ci-tune.yaml"


@pytest.fixture(scope="module")
def study(make_workdir):
    return run_study(make_workdir, "tune", CONFIG)


def _trials(cfg) -> pd.DataFrame:
    return pd.read_csv(tuning.files(cfg)["trials"])


def test_the_search_runs_its_trials_on_two_workers(study):
    workdir, cfg, root = study
    cfg["results_dir"] = str(workdir / cfg["results_dir"])
    table = _trials(cfg)
    assert list(table["number"]) == [0, 1, 2, 3]
    assert set(table["state"]) <= {"complete", "pruned"} and "complete" in set(table["state"])
    assert list(table["seed"]) == [100, 101, 102, 103]  # first_seed + the trial's number
    assert table["worker"].nunique() == 2  # both workers pulled trials
    for n in table["number"]:
        folder = root / "tune" / "trials" / f"trial{n:04d}"
        assert not (folder / "checkpoint.pt").exists()
        evals = pd.read_csv(folder / "train_eval.csv")
        rec = provenance.find(folder / "train_eval.csv")[1]
        assert rec["stage"] == "tune_trial" and rec["variant"] == f"trial{n:04d}"
        lr = table.loc[table["number"] == n, "ppo.lr"].item()
        assert rec["config"]["ppo"]["lr"] == pytest.approx(lr)
        row = table[table["number"] == n].iloc[0]
        assert rec["seed"] == row["seed"]
        if row["reached"]:  # stopped at the first evaluation over the threshold
            assert evals["eval_return"].iloc[-1] >= cfg["tune"]["threshold"]
            assert row["value"] == evals["frames"].iloc[-1]
        else:
            assert row["value"] > cfg["ppo"]["total_frames"]
    # overhead: storage, MLflow, bookkeeping, beside the training
    assert (table["overhead_s"] < table["wall_s"]).all()


def test_the_winner_is_a_study_config_and_is_confirmed_beside_the_recipe(study):
    workdir, cfg, root = study
    cfg["results_dir"] = str(workdir / cfg["results_dir"])
    table = _trials(cfg)
    best = table[table["state"] == "complete"].sort_values("value").iloc[0]
    written = config.load(root / "tune" / "best.yaml")
    assert written["study"] == "ci-tune-best"
    assert written["ppo"]["num_epochs"] == best["ppo.num_epochs"]
    assert written["env"]["num_envs"] == best["env.num_envs"]
    for seed in cfg["seeds"]:
        rec = provenance.find(root / "winner" / f"seed{seed}" / "ppo" / "train_metrics.csv")[1]
        assert rec["variant"] == "winner"
        assert rec["config"]["ppo"]["lr"] == pytest.approx(best["ppo.lr"])
    comparison = pd.read_csv(root / "aggregate" / "ppo_comparison.csv")
    assert list(comparison["quantity"]) == [
        "eval_return", "frames_to_threshold", "seconds_to_threshold",
    ]  # fmt: skip
    assert set(comparison["x"]) == {"winner"} and set(comparison["y"]) == {"tuned"}
    summary = pd.read_csv(root / "aggregate" / "ppo_summary.csv")
    assert {"winner", "tuned"} == set(summary["variant"])
    for name in ("search.png", "search.pdf"):
        assert (root / "figures" / "tune" / name).stat().st_size > 1000
    assert (root / "figures" / "ppo_statistics.png").is_file()
    ranked = pd.read_csv(root / "tune" / "importances.csv")
    assert set(ranked["key"]) == set(tuning.searched_keys(cfg))


def test_each_trial_is_an_mlflow_run_under_the_studys_parent(study):
    workdir, cfg, root = study
    experiment = cfg["mlflow"]["experiment"] or cfg["study"]
    recs = records(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}", experiment)
    trials = {k: v for k, v in recs.items() if k[1] == "tune_trial"}
    assert sorted(k[2] for k in trials) == [f"trial{n:04d}" for n in range(4)]
    for run in trials.values():
        assert run["status"] == "FINISHED" and run["parent"][0] == "study"
        assert "ppo.lr" in run["params"] and run["metrics"]["eval_return"] >= 1
        assert run["metrics"]["tune_objective"] == 1


def test_a_rerun_is_a_no_op(study):
    """(A rerun with more trials continues the study without repeating one: unit tier.)"""
    workdir, _, _ = study
    assert "Nothing to be done" in snakemake(workdir, "--configfile", CONFIG, "-n").stdout


def test_a_killed_workers_trial_is_retried_from_its_checkpoint(make_workdir):
    workdir = make_workdir("tune-kill")
    # one trial of 16 batches that never reaches its threshold; checkpoints every 4 batches
    sets = ["tune.trials=1", "tune.workers=1", "tune.threshold=1000000", "tune.pruner=null"]
    sets += ["ppo.total_frames=4096", "ppo.checkpoint_interval_frames=1024", "mlflow.enabled=false"]
    cmd = [sys.executable, "-m", "rl", "tune-worker", "--config", CONFIG, "--worker", "0"]
    cmd += [a for s in sets for a in ("--set", s)] + ["--out", "w.json", "--threads", "1"]
    folder = workdir / "results" / "ci-tune" / "tune" / "trials" / "trial0000"
    with open(workdir / "first.log", "w") as out:
        first = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (folder / "checkpoint.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline, (
                workdir / "first.log"
            ).read_text()[-3000:]
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    second = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "trial 0 was left running" in second.stderr
    assert "resuming from checkpoint" in second.stderr
    cfg = config.load(workdir / CONFIG, sets)
    cfg["results_dir"] = str(workdir / cfg["results_dir"])
    from rl.tune.search import open_study

    trials = open_study(cfg).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].params == trials[0].params and trials[1].user_attrs["seed"] == 100
    metrics = pd.read_csv(folder / "train_metrics.csv")
    assert list(metrics["frames"]) == list(range(256, 4097, 256))  # the whole run, once
