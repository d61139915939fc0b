"""rl.tracking on a temporary sqlite store: hierarchy, provenance, live flushing, resumed
runs, health checks, redaction of credentials, and the policy as an MLflow model."""

import http.server
import json
import logging
import shutil
import threading
import time

import numpy as np
import pytest
import yaml

from rl.core import config as config_mod
from rl.core.secrets import redact
from rl.tracking import store as tracking
from rl.tracking.run import StageRun
from rl.tracking.store import TrackingUnavailable

from support.services import free_port

SECRET = "s3cr3t-T0KEN"


@pytest.fixture
def cfg(ci_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ci_config["results_dir"] = str(tmp_path / "results")
    return config_mod.validate(ci_config)


@pytest.fixture
def store(cfg, tmp_path, mlflow_empty_db):
    marker = tmp_path / "results" / "ci" / "mlflow" / "initialised.json"
    marker.parent.mkdir(parents=True)
    shutil.copy(mlflow_empty_db, marker.parent / "mlflow.db")
    info = tracking.init_store(cfg, cfg["seeds"], ["default"], marker)
    return marker, info


def client_for(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri(cfg))


def prov(cfg, stage, seed=None, **extra):
    from rl.core import provenance

    return provenance.record(cfg, stage=stage, seed=seed, variant="default") | extra


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "uri, shown",
    [
        (f"https://alice:{SECRET}@mlflow.example.org:5000", "https://***@mlflow.example.org:5000"),
        (f"http://{SECRET}@host/x", "http://***@host/x"),
        (f"https://host/mlflow?token={SECRET}&x=1", "https://host/mlflow?token=***&x=1"),
        (f"postgresql://u:{SECRET}@db/mlflow", "postgresql://***@db/mlflow"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_redact(uri, shown):
    assert redact(uri) == shown
    assert SECRET not in redact(f"error talking to {uri}: refused")


def test_config_refuses_credentials_without_echoing_them(ci_config):
    ci_config.setdefault("mlflow", {})["tracking_uri"] = f"https://bob:{SECRET}@example.org"
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(ci_config)
    assert "mlflow.tracking_uri" in str(err.value)
    assert "MLFLOW_TRACKING_TOKEN" in str(err.value)
    assert SECRET not in str(err.value)


# ---------------------------------------------------------------- store and runs


def test_init_creates_experiment_and_parents_once(cfg, store, tmp_path):
    marker, info = store
    again = tracking.init_store(cfg, cfg["seeds"], ["default"], marker)
    assert again["parents"] == info["parents"]
    assert set(info["parents"]) == {"study", "default/seed0", "default/seed1"}
    runs = client_for(cfg).search_runs([info["experiment_id"]])
    assert len(runs) == 3
    exp = client_for(cfg).get_experiment(info["experiment_id"])
    assert exp.name == "ci"
    assert exp.artifact_location.startswith((tmp_path / "results").as_uri())
    # MLflow 3 opens the experiment on its training runs, not on the GenAI overview
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = client_for(cfg).get_run(info["parents"]["default/seed1"])
    assert parent.data.params == {
        "variant": "default",
        "seed": "1",
        "env_id": cfg["env"]["id"],
        "config_hash": config_mod.config_hash(cfg),
    }


def test_parent_params_name_the_settings_that_differ_between_variants(cfg):
    cfg = config_mod.validate(
        {k: v for k, v in cfg.items()}
        | {
            "variants": [
                {"name": "a", "overrides": {"ppo": {"lr": 0.001}}},
                {"name": "b", "overrides": {"ppo": {"lr": 0.002, "gamma": 0.9}}},
                {"name": "c", "studies": ["pendulum"], "overrides": {"pendulum": {"lr": 0.01}}},
            ]
        }
    )
    by_variant = tracking.variant_params(cfg)
    a, b = tracking.parent_params(by_variant, "a", 0), tracking.parent_params(by_variant, "b", 3)
    assert (a["variant"], a["seed"], b["variant"], b["seed"]) == ("a", "0", "b", "3")
    differ = {"ppo.lr", "ppo.gamma", "pendulum.lr"}
    assert differ <= set(a) and differ <= set(b)
    assert (a["ppo.lr"], b["ppo.lr"], b["ppo.gamma"]) == ("0.001", "0.002", "0.9")
    assert a["ppo.gamma"] == str(cfg["ppo"]["gamma"])  # the base value where a has none
    assert "ppo.clip_epsilon" not in a  # the same in every variant: not a column
    assert a["config_hash"] == config_mod.config_hash(config_mod.variant_config(cfg, "a"))
    # mlflow-sync keeps `default` parents for a study with variants: named, not a KeyError
    assert tracking.parent_params(by_variant, "default", 1) == {"variant": "default", "seed": "1"}
    # a job's own variant config: its identity, hashed as the job hashes it
    own = config_mod.variant_config(cfg, "b")
    assert tracking.variant_params(own, "b")["b"]["config_hash"] == b["config_hash"]


def test_a_study_stage_puts_headline_numbers_on_the_parent_runs(cfg, store):
    marker, info = store
    with StageRun(cfg, marker, "aggregate", prov(cfg, "aggregate")) as run:
        run.log_parents(
            {
                ("default", 0): {"final_eval_return_mean": 9350.0, "frames_to_threshold": 2e4},
                ("default", 1): {"final_eval_return_mean": 40.0, "frames_to_threshold": np.nan},
            },
            {"eval_return.iqm": 4000.0},
        )
    client = client_for(cfg)
    seed0 = client.get_run(info["parents"]["default/seed0"]).data.metrics
    seed1 = client.get_run(info["parents"]["default/seed1"]).data.metrics
    assert seed0 == {"final_eval_return_mean": 9350.0, "frames_to_threshold": 2e4}
    assert seed1 == {"final_eval_return_mean": 40.0}  # a seed that never got there: absent
    assert client.get_run(info["parents"]["study"]).data.metrics == {"eval_return.iqm": 4000.0}


def test_stage_run_is_a_child_with_params_tags_metrics_artifacts(cfg, store, tmp_path):
    marker, info = store
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    with StageRun(
        cfg, marker, "train_ppo", prov(cfg, "train_ppo", 1), 1, config_path=cfg_file
    ) as run:
        for i in range(5):
            run.log_metrics({"frames": 100 * (i + 1), "reward": float(i), "lr": 0.1}, 100 * (i + 1))
        run.log_artifacts([table])
    client = client_for(cfg)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "train_ppo-seed1"
    assert got.data.tags["mlflow.parentRunId"] == info["parents"]["default/seed1"]
    tags = got.data.tags
    for key in ("rl.git_commit", "rl.config_hash", "rl.device", "rl.version.torch"):
        assert tags[key]
    assert tags["rl.stage"] == "train_ppo" and tags["rl.seed"] == "1"
    assert tags["rl.snakemake_rule"] == "train_ppo"
    assert got.data.params == {k: str(v) for k, v in config_mod.flatten(cfg).items()} | {
        "mlflow.tracking_uri": "None",
        "mlflow.experiment": "None",
    }
    history = client.get_metric_history(run.run_id, "reward")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [100, 200, 300, 400, 500]
    assert "frames" not in got.data.metrics
    names = {f.path for f in client.list_artifacts(run.run_id)}
    assert names == {"config", "table.csv"}
    assert [f.path for f in client.list_artifacts(run.run_id, "config")] == ["config/config.yaml"]
    assert float(tags["rl.tracking_seconds"]) > 0


def test_gpu_name_and_container_image_become_tags(cfg, store, monkeypatch):
    marker, _ = store
    p = prov(cfg, "train_ppo", 0, device="cuda:0", gpu_name="NVIDIA H100", container_image="x:1")
    with StageRun(cfg, marker, "train_ppo", p, 0) as run:
        pass
    tags = client_for(cfg).get_run(run.run_id).data.tags
    assert tags["rl.gpu_name"] == "NVIDIA H100"
    assert tags["rl.container_image"] == "x:1"
    assert tags["rl.device"] == "cuda:0"


def test_study_level_stage_hangs_under_the_study_parent(cfg, store):
    marker, info = store
    with StageRun(cfg, marker, "aggregate", prov(cfg, "aggregate")) as run:
        run.log_metrics({"eval_return.mean": 1.0}, 0)
    got = client_for(cfg).get_run(run.run_id)
    assert got.data.tags["mlflow.parentRunId"] == info["parents"]["study"]
    assert got.info.run_name == "aggregate"


def test_metrics_are_flushed_while_the_job_runs(cfg, store):
    marker, _ = store
    cfg["mlflow"]["flush_every"] = 1000
    cfg["mlflow"]["flush_seconds"] = 1.0
    client = client_for(cfg)
    with StageRun(cfg, marker, "train_ppo", prov(cfg, "train_ppo", 0), 0) as run:
        run.log_metrics({"reward": 1.0}, 1)
        assert client.get_metric_history(run.run_id, "reward") == []  # buffered
        time.sleep(1.1)
        run.log_metrics({"reward": 2.0}, 2)
        live = client.get_metric_history(run.run_id, "reward")
        assert sorted(m.step for m in live) == [1, 2]  # visible before the run ends
        assert client.get_run(run.run_id).info.status == "RUNNING"


def test_a_rerun_continues_the_unfinished_run_without_duplicates(cfg, store):
    marker, _ = store
    p = prov(cfg, "train_ppo", 0)
    with pytest.raises(KeyboardInterrupt):
        with StageRun(cfg, marker, "train_ppo", p, 0) as first:
            for step in (1, 2, 3):
                first.log_metrics({"reward": float(step)}, step)
            raise KeyboardInterrupt
    client = client_for(cfg)
    assert client.get_run(first.run_id).info.status == "KILLED"
    with StageRun(cfg, marker, "train_ppo", p, 0) as second:
        for step in (1, 2, 3, 4, 5):  # a resumed job logs some steps again
            second.log_metrics({"reward": float(step)}, step)
    assert second.run_id == first.run_id
    history = client.get_metric_history(first.run_id, "reward")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_untracked_without_marker(cfg, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a\n1\n")
    with StageRun(cfg, None, "train_ppo", {}, 0, config_path=table) as run:
        run.log_metrics({"reward": 1.0}, 1)
        run.log_artifacts([table])
        assert run.log_model(object(), None) is None
        run.flush()
    assert run.run_id is None and not run.enabled


# ---------------------------------------------------------------- health checks


def test_a_job_never_creates_the_sqlite_store(cfg, tmp_path):
    marker = tmp_path / "marker.json"
    uri = tracking.tracking_uri(cfg)
    marker.write_text(json.dumps({"tracking_uri": uri, "experiment": "ci", "available": True}))
    with pytest.raises(TrackingUnavailable, match="does not exist") as err:
        StageRun(cfg, marker, "train_ppo", {}, 0).__enter__()
    assert "mlflow-init" in str(err.value) and "mlflow-sync" in str(err.value)
    assert not (tmp_path / "results" / "ci" / "mlflow" / "mlflow.db").exists()


def test_a_job_refuses_a_store_other_than_the_initialised_one(cfg, store, monkeypatch, tmp_path):
    marker, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(TrackingUnavailable, match="another store"):
        StageRun(cfg, marker, "train_ppo", {}, 0).__enter__()


def test_a_deleted_store_is_reported_with_the_sync_fix(cfg, store, tmp_path):
    marker, _ = store
    (tmp_path / "results" / "ci" / "mlflow" / "mlflow.db").unlink()
    with pytest.raises(TrackingUnavailable, match="mlflow-sync"):
        StageRun(cfg, marker, "train_ppo", {}, 0).__enter__()


def test_unreachable_server_fails_fast_and_redacted(cfg, tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{port}")
    cfg["mlflow"]["health_check_seconds"] = 2
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as err:
        tracking.init_store(cfg, [0], ["default"], tmp_path / "marker.json")
    assert time.monotonic() - t0 < 15
    msg = str(err.value)
    assert f"http://***@127.0.0.1:{port}" in msg
    assert "MLFLOW_TRACKING_URI" in msg and "on_unreachable: continue" in msg
    assert SECRET not in msg
    assert "\n" not in msg
    assert not (tmp_path / "marker.json").exists()


def test_unreachable_server_with_continue_runs_untracked(cfg, tmp_path, monkeypatch, caplog):
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}/?token={SECRET}")
    cfg["mlflow"]["health_check_seconds"] = 2
    cfg["mlflow"]["on_unreachable"] = "continue"
    marker = tmp_path / "marker.json"
    with caplog.at_level(logging.WARNING, logger="rl"):
        info = tracking.init_store(cfg, [0], ["default"], marker)
        assert info["available"] is False
        with StageRun(cfg, marker, "train_ppo", prov(cfg, "train_ppo", 0), 0) as run:
            run.log_metrics({"reward": 1.0}, 1)
    assert run.run_id is None and not run.enabled
    text = marker.read_text() + caplog.text
    assert "UNTRACKED" in caplog.text and "mlflow-sync" in caplog.text
    assert "token=***" in marker.read_text()
    assert SECRET not in text


class _FakeServer(http.server.BaseHTTPRequestHandler):
    status, body = 404, b"<html>not here</html>"

    def _answer(self):
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (404, b"<html>not here</html>", "not an MLflow tracking server"),
        (401, b"{}", "refused the credentials"),
    ],
)
def test_misconfigured_server_is_named(cfg, tmp_path, monkeypatch, status, body, expected):
    handler = type("H", (_FakeServer,), {"status": status, "body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://user:{SECRET}@127.0.0.1:{server.server_port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(TrackingUnavailable, match=expected) as err:
            tracking.init_store(cfg, [0], ["default"], tmp_path / "m.json")
        assert SECRET not in str(err.value)
    finally:
        server.shutdown()


class _SlowServer(_FakeServer):
    """Alive but busy: takes the connection at once and answers only after a while."""

    status, body, delay = 200, b"{}", 3.0

    def _answer(self):
        time.sleep(self.delay)
        super()._answer()

    do_GET = do_POST = _answer


def test_busy_server_is_waited_for_not_called_unreachable():
    # 32 jobs starting at once made a real server answer the check late; a health check
    # that timed out the answer like the connection killed jobs of a healthy study
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}"
        t0 = time.monotonic()
        tracking.check_store(uri, 1, initialised=True)  # connection at once, answer after 3 s
        assert time.monotonic() - t0 >= _SlowServer.delay
    finally:
        server.shutdown()


def test_file_store_is_refused_with_the_fix(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    with pytest.raises(TrackingUnavailable, match="sqlite"):
        tracking.init_store(cfg, [0], ["default"], tmp_path / "m.json")


# ---------------------------------------------------------------- the policy model


def test_logged_policy_loads_and_acts_like_the_evaluated_actor(cfg, store, monkeypatch):
    import mlflow
    import torch
    from tensordict import TensorDict

    from rl.ppo.envs import make_env, observation_stats
    from rl.ppo.evaluate import evaluate_episode
    from rl.ppo.models import exportable_policy, make_actor_critic

    marker, _ = store
    torch.manual_seed(0)
    stats = observation_stats(cfg["env"], 200, 0)
    env, _ = make_env(cfg["env"], 7, num_envs=1, obs_stats=stats)
    actor, _ = make_actor_critic(cfg["ppo"], 9, env.action_spec, "cpu")
    with StageRun(cfg, marker, "train_ppo", prov(cfg, "train_ppo", 0), 0) as run:
        uri = run.log_model(*exportable_policy(actor, stats))
        assert run.log_model(*exportable_policy(actor, stats)) == uri  # logged once
    tags = client_for(cfg).get_run(run.run_id).data.tags
    assert tags["rl.model_uri"] == uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.tracking_uri(cfg))  # for models:/
    policy = mlflow.pytorch.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 9)
    assert info.saved_input_example_info is not None
    for batch in (1, 5):
        assert policy(torch.zeros(batch, 9)).shape == (batch, 1)

    expected = evaluate_episode(env, actor, cfg["env"]["max_episode_steps"])
    raw_env, _ = make_env(cfg["env"], 7, num_envs=1)  # no normalisation: the model does it

    def act(td: TensorDict) -> TensorDict:
        return td.set("action", policy(td["observation"]))

    with torch.no_grad():
        rollout = raw_env.rollout(cfg["env"]["max_episode_steps"], act, break_when_any_done=True)
    got = (float(rollout["next", "reward"].sum()), int(rollout["next", "step_count"].max()))
    assert got[1] == expected[1]
    assert got[0] == pytest.approx(expected[0], rel=1e-4)


def test_other_backends_are_checked_with_one_query(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://u:{SECRET}@127.0.0.1:9/mlflow")
    with pytest.raises(TrackingUnavailable, match="postgresql://\\*\\*\\*@127.0.0.1:9") as err:
        tracking.init_store(cfg, [0], ["default"], tmp_path / "m.json")
    assert SECRET not in str(err.value)
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in __import__("os").environ
