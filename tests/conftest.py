"""Fixtures every tier shares, and the tiers themselves: a test's folder is its tier.

- tests/unit/: in-process checks, no workflow run, service or container (minutes in all).
- tests/workflow/: real snakemake runs of small configs, resume and kill tests, bad input,
  real training.
- tests/system/: the podman-built image, SLURM, the PostgreSQL tracking server, Chromium.

One hook marks each test with its tier (`-m unit` works like `tests/unit`); under
pytest-xdist a module, or the modules sharing a costly fixture, run on one worker; at the end
of the run each tier's share of the test time is printed.
"""

import copy
import os
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from support import REPO
from support.services import free_port, require_postgres, server_folder
from support.workflow import copy_workflow, snakemake

# `cfg` (the validated ci config) and `stats` (its observation statistics) for the PPO tests
# of every tier; a module's own `cfg` fixture takes precedence.
pytest_plugins = ["support.training"]
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "workflow", "system")
# Modules that share a fixture too costly to build twice (the image, the tracking server), or
# that run snakemake in the shared ci study while others copy it, run on one xdist worker.
SHARED = {
    "workflow/test_workflow.py": "ci-study",
    "workflow/test_bad_input.py": "ci-study",
    "workflow/test_tracking_study.py": "ci-study",
    "system/test_mlflow_ui.py": "ci-study",
    "system/test_container.py": "image",
    "system/test_cluster.py": "image",
    "system/test_tracking_server.py": "tracking-server",
    "system/test_tracking_concurrency.py": "tracking-server",
}
# MuJoCo picks its OpenGL backend when first imported: headless EGL for every test (as the
# verbs and the image do), set before any test makes an environment.
os.environ.setdefault("MUJOCO_GL", "egl")


def _tier(path: Path) -> str:
    parts = path.relative_to(TESTS).parts
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(
            f"{path}: a test module belongs in tests/unit, tests/workflow or tests/system"
        )
    return parts[0]


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(_tier(Path(item.path)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduling with a module, or the group of modules in SHARED, as
    the unit one worker runs; in collection order, so the system tier's long groups start
    first (xdist's own xdist_group marks do not reach its scheduler under pytest 9.2)."""
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0].removeprefix("tests/")
            return SHARED.get(module, module)

    if config.getvalue("dist") in ("each", "worksteal"):
        return None
    config.option.loadscopereorder = False
    return Groups(config, log)


_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Each tier's test time (set-up, call and tear-down), summed across xdist workers."""
    path = report.nodeid.split("::")[0]
    parts = Path(path).parts
    if len(parts) >= 2 and parts[0] == "tests" and parts[1] in TIERS:
        _seconds[parts[1]] += report.duration


def pytest_terminal_summary(terminalreporter):
    total = sum(_seconds.values())
    if not total:
        return
    shares = ", ".join(
        f"{tier} {_seconds[tier]:.0f} s ({_seconds[tier] / total:.0%})"
        for tier in TIERS
        if tier in _seconds
    )
    terminalreporter.write_line(
        f"test time by tier (summed over workers): {shares}; total {total:.0f} s"
    )


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
    return lambda name="wf": copy_workflow(tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory, request):
    """The real workflow on configs/ci.yaml, run once per `pytest` run by the real snakemake,
    whichever xdist worker asks first (the others wait for it and share it): (workdir, the
    raw ci config, snakemake's output). Tests must not change it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: the folder they all share
        shared = shared.parent
    workdir, done = shared / "ci-study", shared / "ci-study.done"
    with FileLock(shared / "ci-study.lock"):
        if not done.exists():
            copy_workflow(workdir)
            proc = snakemake(workdir, "--configfile", "configs/ci.yaml")
            done.write_text(proc.stdout + proc.stderr)
    with open(workdir / "configs" / "ci.yaml") as f:
        cfg = yaml.safe_load(f)
    return workdir, cfg, done.read_text()


@pytest.fixture(scope="session")
def tracking_server():
    """A real PostgreSQL-backed MLflow server (`python -m rl tracking-server`'s
    TrackingServer) for the session, on a free port; tests use their own experiments."""
    import shutil

    from rl.tracking.server import TrackingServer

    require_postgres()
    root = server_folder()
    server = TrackingServer(root / "server", port=free_port(), workers=2)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
