"""One provenance record per output folder: what made these numbers."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rl.config import config_hash
from rl.files import write_json

PACKAGES = (
    "torch",
    "torchrl",
    "tensordict",
    "gymnasium",
    "mujoco",
    "numpy",
    "pandas",
    "mlflow",
    "snakemake",
    "rl-pipeline",
)
REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict[str, str | bool | None]:
    """Commit and dirty flag: from RL_GIT_COMMIT/RL_GIT_DIRTY (set by the Snakefile,
    so they reach containers), else from git in the package's checkout."""
    commit = os.environ.get("RL_GIT_COMMIT") or _git("rev-parse", "HEAD")
    dirty_env = os.environ.get("RL_GIT_DIRTY")
    if dirty_env is not None:
        dirty: bool | None = dirty_env == "1"
    else:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"git_commit": commit or "unknown", "git_dirty": dirty}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def device_info(device: str = "cpu") -> dict[str, str]:
    info = {"device": str(device), "host": socket.gethostname(), "machine": platform.machine()}
    if str(device).startswith("cuda"):
        import torch

        info["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def in_container() -> str | None:
    """The image a job runs in, if any (set by our Dockerfile, or apptainer's own vars)."""
    return (
        os.environ.get("RL_CONTAINER_IMAGE")
        or os.environ.get("APPTAINER_CONTAINER")
        or os.environ.get("SINGULARITY_CONTAINER")
    )


def record(
    cfg: dict,
    *,
    stage: str,
    seed: int | None = None,
    variant: str | None = None,
    device: str = "cpu",
    started: datetime | None = None,
    extra: dict | None = None,
) -> dict:
    now = datetime.now(UTC)
    rec = {
        "stage": stage,
        "rule": os.environ.get("RL_SNAKEMAKE_RULE", stage),
        "study": cfg["study"],
        "variant": variant,
        "seed": seed,
        "config_hash": config_hash(cfg),
        **git_state(),
        "versions": versions(),
        **device_info(device),
        "container_image": in_container(),
        "configured_image": cfg.get("container"),
        "started_utc": (started or now).isoformat(),
        "finished_utc": now.isoformat(),
    }
    rec.update(extra or {})
    return rec


def write(folder: str | Path, cfg: dict, **kwargs) -> dict:
    """Write `provenance.json` into `folder` and return the record."""
    rec = record(cfg, **kwargs)
    write_json(Path(folder) / "provenance.json", rec)
    return rec
