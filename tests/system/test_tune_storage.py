"""A tuning study's trials on the tracking server's PostgreSQL (`tracking-server
--optuna-port`): two tune-worker processes share one search over TCP with the generated
password, a worker killed in a trial is found by Optuna's heartbeat and its trial retried
from its checkpoint, the `optuna` database is not MLflow's, and no password means a clear
error."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from rl.core import config
from rl.tracking.server import OPTUNA, TrackingServer, postgres_bindir

from support.services import free_port, require_postgres, server_folder

CONFIG = "configs/ci-tune.yaml"


@pytest.fixture(scope="module")
def server():
    require_postgres()
    with TrackingServer(server_folder(), port=free_port(), workers=1, optuna_port=free_port()) as s:
        yield s


def _worker(workdir, n: int, env: dict, *sets: str, **popen):
    cmd = [sys.executable, "-m", "rl", "tune-worker", "--config", CONFIG, "--worker", str(n)]
    cmd += ["--out", f"w{n}.json", "--threads", "1"]
    cmd += [a for s in ("mlflow.enabled=false", "tune.heartbeat_seconds=1", *sets)
            for a in ("--set", s)]  # fmt: skip
    return subprocess.Popen(cmd, cwd=workdir, env=env, **popen)


def _study(server, env) -> optuna.Study:
    os.environ["PGPASSWORD"] = env["PGPASSWORD"]
    try:
        return optuna.load_study(study_name="ci-tune", storage=server.optuna_storage)
    finally:
        del os.environ["PGPASSWORD"]


def test_two_workers_share_a_search_and_a_killed_ones_trial_is_retried(server, make_workdir):
    workdir = make_workdir("tune-pg")
    env = os.environ | {
        "RL_TUNE_STORAGE": server.optuna_storage,
        "PGPASSWORD": server.password_file.read_text().strip(),
    }
    both = [_worker(workdir, n, env, stderr=subprocess.PIPE, text=True) for n in (0, 1)]
    for proc in both:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    trials = _study(server, env).get_trials()
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2

    # a fifth trial that runs its whole budget, its worker killed after a checkpoint
    long = ["tune.trials=5", "tune.threshold=1000000", "tune.pruner=null", "ppo.total_frames=4096",
            "ppo.checkpoint_interval_frames=1024"]  # fmt: skip
    folder = workdir / "results" / "ci-tune" / "tune" / "trials" / "trial0004"
    killed = _worker(workdir, 2, env, *long, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (folder / "checkpoint.pt").exists():
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(5)  # past the heartbeat's grace period (4 beats of 1 s)
    again = _worker(workdir, 3, env, *long, stderr=subprocess.PIPE, text=True)
    out = again.communicate(timeout=300)[1]
    assert again.returncode == 0, out[-3000:]
    assert "resuming from checkpoint" in out
    trials = _study(server, env).get_trials()
    assert [t.state.name for t in trials[4:]] == ["FAIL", "COMPLETE"]
    assert trials[5].system_attrs["failed_trial"] == 4 and trials[5].params == trials[4].params


def test_the_optuna_database_is_not_mlflows_and_needs_the_password(server, make_workdir):
    def tables(db):
        cmd = [str(postgres_bindir() / "psql"), *server._at(), "-U", "mlflow", "-d", db, "-tAc",
               "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"]  # fmt: skip
        return set(subprocess.run(cmd, capture_output=True, text=True, **server._as_owner())
                   .stdout.split())  # fmt: skip

    assert "studies" in tables(OPTUNA) and "studies" not in tables("mlflow")
    assert "experiments" in tables("mlflow") and "experiments" not in tables(OPTUNA)
    workdir = make_workdir("tune-pg-nopass")
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env["RL_TUNE_STORAGE"] = server.optuna_storage
    proc = _worker(workdir, 0, env, stderr=subprocess.PIPE, text=True)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode != 0
    assert "Cannot open the search's Optuna storage" in err and "PGPASSWORD" in err
    assert config.load(workdir / CONFIG)["tune"]["storage"] is None  # the URL came from the env
