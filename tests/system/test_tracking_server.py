"""The team tracking server (`python -m rl tracking-server`: PostgreSQL + mlflow server),
for real: a Snakemake study of 26 jobs logs to it and loses nothing, a finished local study
is pushed to it, and a server stopped in the middle of a training job and started again
(on the same folder: the records survive) is handled as `mlflow.on_unreachable` says."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from rl.cli import STAGES
from rl.tracking.server import ServerError, TrackingServer

from support.mlflow_records import records, sync, totals
from support.services import free_port, require_postgres, server_folder
from support.workflow import snakemake

NO_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@pytest.fixture(autouse=True, scope="module")
def postgres():
    require_postgres()


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | extra


class ServerVerb:
    """`python -m rl tracking-server` as a user runs it, stopped as a scheduler does (SIGTERM)."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 240) -> "ServerVerb":
        self.out = self.folder.parent / f"verb-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "rl", "tracking-server", "--dir", str(self.folder)]
        cmd += ["--port", str(self.port), "--workers", "2"]
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())
        deadline = time.monotonic() + timeout
        while f"MLflow tracking server on {self.uri}" not in self.out.read_text():
            assert self.proc.poll() is None, self.out.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.5)
        with urllib.request.urlopen(f"{self.uri}/health", timeout=10) as resp:
            assert resp.status == 200
        return self

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=120) == 0, self.out.read_text()[-3000:]
        log = self.out.read_text()
        assert "tracking server stopped" in log
        assert not (self.folder / "postgres" / "postmaster.pid").exists()  # PostgreSQL is down
        return log


def _study(make_workdir, name: str, seeds: list[int], mlflow: dict, **ppo) -> Path:
    workdir = make_workdir(name)
    with open(workdir / "configs" / "ci.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["seeds"] = seeds
    cfg["mlflow"] = mlflow
    cfg["ppo"] |= ppo
    (workdir / "configs" / "server.yaml").write_text(yaml.safe_dump(cfg))
    return workdir


def test_a_study_of_26_jobs_at_4_cores_loses_nothing_on_the_server(
    tracking_server, make_workdir, tmp_path
):
    mlflow = {"tracking_uri": tracking_server.uri, "experiment": "study-on-server"}
    workdir = _study(make_workdir, "server-study", [0, 1, 2, 3], mlflow)
    proc = snakemake(workdir, "--configfile", "configs/server.yaml", cores="4", env=_env())
    done = [line for line in proc.stderr.splitlines() if "steps (100%) done" in line]
    jobs = int(done[-1].split(" of ")[1].split()[0])
    assert jobs >= 24, done

    live = records(tracking_server.uri, "study-on-server")
    for key, rec in live.items():
        assert rec["status"] == "FINISHED", key
    for seed in range(4):
        assert live[("stage", "train_ppo", "default", str(seed))]["models"] == 1
    # what the files under results/ say the records are: mlflow-sync into an empty store
    rebuilt = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    sync(workdir, "--to", rebuilt)
    assert records(rebuilt, "study-on-server") == live
    print(f"\n{jobs} jobs on the server: {totals(live)}")


def test_mlflow_sync_pushes_a_finished_local_study_to_the_server(ci_study, tracking_server):
    workdir, _, _ = ci_study
    local = records(f"sqlite:///{workdir / 'results' / 'ci' / 'mlflow' / 'mlflow.db'}", "ci")
    for _ in range(2):  # the second push adds nothing
        sync(workdir, "--to", tracking_server.uri)
        assert records(tracking_server.uri, "ci") == local


def _train_ppo_run(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client, None
    found = client.search_runs([exp.experiment_id], "tags.`rl.stage` = 'train_ppo'")
    return client, (found[0] if found else None)


def _assert_run_holds_the_files(uri: str, experiment: str, folder: Path) -> None:
    """The run's metric history is exactly the rows of the job's files: none lost, no step
    twice (a resumed job logs again what it logged before the outage)."""
    client, run = _train_ppo_run(uri, experiment)
    assert run.info.status == "FINISHED"
    rows = STAGES["train_ppo"].rows(folder)
    for key in {k for _, row in rows for k in row}:
        logged = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert logged == sorted(step for step, row in rows if key in row), key


@pytest.mark.parametrize("on_unreachable", ["fail", "continue"])
def test_a_server_stopped_mid_job_and_restarted(on_unreachable, make_workdir):
    folder = server_folder() / "server"
    verb = ServerVerb(folder, free_port()).start()
    mlflow = {"tracking_uri": verb.uri, "flush_every": 1, "on_unreachable": on_unreachable}
    mlflow["experiment"] = f"outage-{on_unreachable}"
    workdir = _study(make_workdir, f"outage-{on_unreachable}", [0], mlflow, total_frames=16384)
    job_env = _env(**NO_RETRIES)  # the job learns of the outage at its next call
    until = ("--configfile", "configs/server.yaml", "--until", "train_ppo")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *until]
    with open(workdir / "snakemake.log", "w") as out:
        job = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=out, env=job_env)
    deadline = time.monotonic() + 600
    while True:  # stop the server once the training job has logged its first points
        client, run = _train_ppo_run(verb.uri, mlflow["experiment"])
        if run is not None and run.data.metrics:
            break
        assert job.poll() is None, (workdir / "snakemake.log").read_text()[-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    verb.stop()
    code = job.wait(timeout=900)
    ppo = workdir / "results" / "ci" / "default" / "seed0" / "ppo"
    train_log = workdir / "results" / "ci" / "logs" / "train_ppo" / "default-seed0.log"
    text = train_log.read_text() if train_log.exists() else ""
    if on_unreachable == "fail":
        assert code != 0
        assert f"MLflow tracking store '{verb.uri}' cannot be used" in text
    else:
        assert code == 0, (workdir / "snakemake.log").read_text()[-4000:]
        assert "UNTRACKED" in text and "mlflow-sync" in text

    verb.start()  # the same folder: the records of before the outage are there
    _, before = _train_ppo_run(verb.uri, mlflow["experiment"])
    assert before is not None and before.info.status != "FINISHED"
    try:
        if on_unreachable == "fail":  # rerun: the job resumes its checkpoint and its run
            snakemake(workdir, *until, "--rerun-incomplete", env=_env())
        else:  # the job finished untracked: mlflow-sync completes its run from the files
            sync(workdir)
        _assert_run_holds_the_files(verb.uri, mlflow["experiment"], ppo)
        _, after = _train_ppo_run(verb.uri, mlflow["experiment"])
        assert after.info.run_id == before.info.run_id  # continued, not a second run
    finally:
        verb.stop()


def test_clear_errors_before_anything_starts(tracking_server, monkeypatch, tmp_path):
    with pytest.raises(ServerError, match="already runs") as err:
        TrackingServer(tracking_server.root, port=free_port()).start()
    assert "--dir" in str(err.value)
    held = f"Port {tracking_server.port} on 127.0.0.1 is held by `.*mlflow.*mlflow.tracking_uri"
    with pytest.raises(ServerError, match=held):
        TrackingServer(server_folder() / "other", port=tracking_server.port).start()
    monkeypatch.setenv("RL_PG_BINDIR", str(tmp_path))
    with pytest.raises(ServerError, match="apt-get install postgresql"):
        TrackingServer(server_folder() / "third", port=free_port()).start()
