import copy
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# MuJoCo picks its OpenGL backend when first imported: headless EGL for every test (as the
# verbs and the image do), set before any test makes an environment.
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def ci_config() -> dict:
    with open(REPO / "configs" / "ci.yaml") as f:
        return copy.deepcopy(yaml.safe_load(f))


@pytest.fixture(scope="session")
def mlflow_empty_db(tmp_path_factory) -> Path:
    """A migrated, empty MLflow sqlite database to copy: migrating a fresh one takes
    seconds, and tests that need a store copy this file instead."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(scope="session")
def make_workdir(tmp_path_factory):
    """A factory of fresh copies of the workflow (Snakefile, workflow/, configs/, rl/)."""
    import shutil

    def make(name: str = "wf") -> Path:
        root = tmp_path_factory.mktemp(name)
        for item in ("Snakefile", "workflow", "configs", "rl"):
            src = REPO / item
            if src.is_dir():
                shutil.copytree(
                    src, root / item, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(src, root / item)
        return root

    return make


@pytest.fixture(scope="session")
def ci_workdir(make_workdir) -> Path:
    """A copy of the workflow to run the ci study in."""
    return make_workdir("wf")


def snakemake(workdir: Path, *args: str, cores: str = "2", check: bool = True, env=None):
    """The real snakemake in `workdir`, as a user runs it (the venv's tools first on PATH);
    a failure shows the end of its output."""
    import subprocess
    import sys

    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", "--cores", cores, *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def run_study(make_workdir, name: str, configfile: str) -> tuple[Path, dict, Path]:
    """A fresh copy of the workflow that ran `configfile` to the end: (workdir, the validated
    config, the study's results folder)."""
    from rl.core import config

    workdir = make_workdir(name)
    snakemake(workdir, "--configfile", configfile)
    with open(workdir / configfile) as f:
        cfg = config.validate(yaml.safe_load(f))
    return workdir, cfg, workdir / cfg["results_dir"] / cfg["study"]


@pytest.fixture(scope="session")
def ci_study(ci_workdir):
    """The real workflow on configs/ci.yaml, run once per session by the real snakemake:
    (workdir, the raw ci config, snakemake's CompletedProcess). Tests must not change it."""
    proc = snakemake(ci_workdir, "--configfile", "configs/ci.yaml")
    with open(ci_workdir / "configs" / "ci.yaml") as f:
        cfg = yaml.safe_load(f)
    return ci_workdir, cfg, proc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_folder() -> Path:
    """A fresh folder for a tracking server: under /tmp, not pytest's tmp_path, whose root is
    private to root, and PostgreSQL (which refuses root) runs as `postgres` there."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="rl-tracking-"))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def tracking_server():
    """A real PostgreSQL-backed MLflow server (`python -m rl tracking-server`'s
    TrackingServer) for the session, on a free port; tests use their own experiments."""
    import shutil

    from rl.tracking.server import TrackingServer

    root = server_folder()
    server = TrackingServer(root / "server", port=free_port(), workers=2)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
