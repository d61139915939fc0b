"""The real snakemake, run in a copy of the workflow as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from . import REPO

WORKFLOW_FILES = ("Snakefile", "workflow", "configs", "rl")


def copy_workflow(root: Path) -> Path:
    """Copy what a run reads (Snakefile, workflow/, configs/, rl/) into `root`."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_FILES:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(
                src, root / item, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(src, root / item)
    return root


def snakemake(workdir: Path, *args: str, cores: str = "2", check: bool = True, env=None):
    """The real snakemake in `workdir`, as a user runs it (the venv's tools first on PATH);
    a failure shows the end of its output."""
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
