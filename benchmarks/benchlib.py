"""What both benchmark scripts need: find a baseline, run a process, read its JSON line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINES = Path(__file__).resolve().parent / "baselines"  # the tutorials, kept unchanged


def baseline_path(arg: str | None, filename: str) -> Path:
    """`arg` (the file or its folder), else $RL_BASELINES, else benchmarks/baselines."""
    path = Path(arg or os.environ.get("RL_BASELINES") or BASELINES)
    path = (path / filename if path.is_dir() else path).resolve()  # runs use cwd=REPO
    if not path.is_file():
        sys.exit(
            f"The tutorial baseline was not found at {path}. Pass --baseline PATH (the file "
            f"{filename} or its folder) or set RL_BASELINES."
        )
    return path


def json_tail(proc: subprocess.CompletedProcess) -> dict:
    """The last line of stdout that is a JSON object."""
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in output:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def run_json(cmd: list[str], timeout: float, threads: int | None = None) -> dict:
    """Run `cmd` in the repository; its JSON result. `threads` caps OMP/MKL from outside
    (the baselines are run unchanged)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return json_tail(proc)


def machine() -> dict:
    """Where and on what a benchmark ran (history files keep it beside the numbers)."""
    import torch

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),  # other work on the machine makes numbers noisy
    }
