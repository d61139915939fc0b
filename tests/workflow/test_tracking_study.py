"""The ci study's MLflow records (the real workflow, run once per session): the logged
policy acts in the environment, and `mlflow-sync` rebuilds the same records from results/
after the store is deleted, or pushes them to another store, without duplicating anything."""

import shutil
from pathlib import Path

import pytest

from rl.cli import STAGES
from rl.core import config as config_mod
from rl.tracking import store as tracking
from rl.tracking.run import StageRun

from support.mlflow_records import records, sync, totals

SECRET = "s3cr3t-T0KEN"


@pytest.fixture(scope="module")
def live(ci_study):
    workdir, cfg, _ = ci_study
    resolved = config_mod.load(workdir / "results" / "ci" / "config.yaml")
    uri = f"sqlite:///{workdir / 'results' / 'ci' / 'mlflow' / 'mlflow.db'}"
    return workdir, resolved, records(uri, "ci")


def test_live_records_are_complete(live):
    _, cfg, recs = live
    seeds = [str(s) for s in cfg["seeds"]]
    stages = {k[1] for k in recs if k[0] == "stage"}
    assert stages == {"obs_norm_stats", "train_ppo", "evaluate_ppo", "aggregate", "plot"} | {
        "train_pendulum",
        "animate_pendulum",
        "aggregate_pendulum",
        "plot_pendulum",
    }
    for key, rec in recs.items():
        assert rec["status"] == "FINISHED", key
        if key[0] != "stage":
            continue
        assert rec["params"]["ppo.lr"] == str(cfg["ppo"]["lr"])
        assert "config/config.yaml" in rec["artifacts"] and "provenance.json" in rec["artifacts"]
        expected_parent = ("study", "", "", "") if key[3] == "" else ("seed", "", "default", key[3])
        assert rec["parent"] == expected_parent
    for seed in seeds:
        assert recs[("stage", "train_ppo", "default", seed)]["models"] == 1
        # the parent run, the row the UI shows first: what tells it apart, and its numbers
        parent = recs[("seed", "", "default", seed)]
        assert parent["params"] == {
            "variant": "default",
            "seed": seed,
            "env_id": cfg["env"]["id"],
            "config_hash": config_mod.config_hash(cfg),
        }
        headline = {"final_eval_return_mean", "final_eval_return_min", "reached_threshold"}
        headline |= {"pendulum_final_return", "pendulum_eval_return", "pendulum_final_abs_angle"}
        assert headline <= set(parent["metrics"]), parent["metrics"]
    study = recs[("study", "", "", "")]["metrics"]
    assert set(study) == {"eval_return.iqm", "eval_return.iqm_ci_low", "eval_return.iqm_ci_high"}
    print(f"\nlive records of the ci study: {totals(recs)}")


def test_logged_policy_of_the_study_acts_in_the_environment(live, monkeypatch):
    import mlflow
    import torch

    from rl.core.files import read_json
    from rl.ppo.envs import make_env
    from rl.ppo.evaluate import evaluate_episode, load_actor

    workdir, cfg, _ = live
    seed_dir = workdir / "results" / "ci" / "default" / "seed0"
    uri = f"sqlite:///{workdir / 'results' / 'ci' / 'mlflow' / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("ci").experiment_id],
        "tags.`rl.stage` = 'train_ppo' AND tags.`rl.seed` = '0'",
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # resolves the models:/ URI
    policy = mlflow.pytorch.load_model(run.data.tags["rl.model_uri"])

    stats = read_json(seed_dir / "obs_norm" / "stats.json", "stats")
    env, _ = make_env(cfg["env"], 123, num_envs=1, obs_stats=stats)
    actor, _ = load_actor(cfg, seed_dir / "ppo" / "policy.pt", "cpu", env)
    expected = evaluate_episode(env, actor, cfg["env"]["max_episode_steps"])
    raw, _ = make_env(cfg["env"], 123, num_envs=1)
    with torch.no_grad():
        rollout = raw.rollout(
            cfg["env"]["max_episode_steps"],
            lambda td: td.set("action", policy(td["observation"])),
            break_when_any_done=True,
        )
    assert int(rollout["next", "step_count"].max()) == expected[1]
    assert float(rollout["next", "reward"].sum()) == pytest.approx(expected[0], rel=1e-4)


def copy_study_without_store(workdir: Path, dest: Path) -> Path:
    shutil.copytree(
        workdir / "results" / "ci",
        dest / "results" / "ci",
        ignore=shutil.ignore_patterns("mlflow", "checkpoint.pt"),
    )
    return dest


def test_sync_rebuilds_a_deleted_store_and_is_idempotent(live, tmp_path):
    workdir, cfg, live_recs = live
    copy = copy_study_without_store(workdir, tmp_path)  # the same study, its store deleted
    first = sync(copy)
    assert "runs created" in first.stderr
    uri = f"sqlite:///{copy / 'results' / 'ci' / 'mlflow' / 'mlflow.db'}"
    synced = records(uri, "ci")
    assert synced == live_recs
    print(f"\nrebuilt by mlflow-sync: {totals(synced)}")

    again = sync(copy)
    assert " 0 runs created, 0 completed" in again.stderr
    assert records(uri, "ci") == live_recs


def test_sync_pushes_to_another_store_and_completes_a_partial_run(live, tmp_path):
    from rl.core.files import read_json

    workdir, cfg, live_recs = live
    other = f"sqlite:///{tmp_path / 'team.db'}"
    # A job that lost its store half-way: the run exists, unfinished, with some points.
    info = tracking.open_store(cfg, other, cfg["seeds"], ["default"])
    folder = workdir / "results" / "ci" / "default" / "seed0" / "ppo"
    prov = read_json(folder / "provenance.json", "provenance")
    rows = STAGES["train_ppo"].rows(folder)
    with pytest.raises(RuntimeError):
        with StageRun(cfg, info, "train_ppo", prov, 0, uri=other) as run:
            for step, row in rows[:2]:
                run.log_metrics(row, step)
            raise RuntimeError("the job died")

    proc = sync(workdir, "--to", other)
    assert "1 completed" in proc.stderr
    assert records(other, "ci") == live_recs
    sync(workdir, "--to", other)
    assert records(other, "ci") == live_recs
