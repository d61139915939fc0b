"""Which python the rules run `-m rl` with (workflow/rules/common.smk's RL): the venv's
snakemake, started from a shell without the venv on PATH, plans jobs with the venv's
interpreter; an interpreter without the package's dependencies stops at parse time with
one paragraph; inside the image the rules keep the image's `python`. All dry runs (~1 s
each) of the real Snakefile, in a temporary working directory."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

SNAKEMAKE = Path(sys.executable).with_name("snakemake")  # the console script, as users run it
BARE_PATH = "/usr/bin:/bin"  # no venv first: `python` there is not the venv's (or absent)

# A sitecustomize that makes modules not installed, as far as both `import` and
# importlib.util.find_spec can tell: the path finder skips them.
HIDING_SITECUSTOMIZE = """\
import os
import sys
from importlib.machinery import PathFinder

HIDDEN = set(os.environ["RL_TEST_HIDDEN_MODULES"].split(","))


class _Hiding(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [_Hiding if f is PathFinder else f for f in sys.meta_path]
"""


@pytest.fixture(scope="module")
def hiding_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hide")
    (d / "sitecustomize.py").write_text(HIDING_SITECUSTOMIZE)
    return d


def dry_run(workdir: Path, *args: str, path: str = BARE_PATH, hide: str = "", hiding_dir=None):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = path
    if hide:
        env["PYTHONPATH"] = str(hiding_dir)
        env["RL_TEST_HIDDEN_MODULES"] = hide
    cmd = [str(SNAKEMAKE), "-n", "-p", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(REPO / "configs" / "ci.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    return proc, proc.stdout + proc.stderr


def rl_commands(out: str) -> list[str]:
    """The printed `... -m rl <verb>` lines, one per job: all but `all` (no shell)."""
    lines = [line.strip().removeprefix("Shell command:") for line in out.splitlines()]
    commands = [line.strip() for line in lines if " -m rl " in line]
    total = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("total "))
    assert len(commands) == total - 1 > 0, out[-4000:]
    return commands


def test_the_hiding_sitecustomize_hides(hiding_dir):
    code = "import importlib.util as u; print(u.find_spec('gymnasium'), u.find_spec('yaml'))"
    env = {**os.environ, "PYTHONPATH": str(hiding_dir), "RL_TEST_HIDDEN_MODULES": "gymnasium"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.startswith("None ModuleSpec(name='yaml'"), proc.stdout


def test_rules_use_the_interpreter_snakemake_was_started_with(tmp_path):
    assert SNAKEMAKE.is_file(), f"no snakemake beside {sys.executable}"
    proc, out = dry_run(tmp_path)
    assert proc.returncode == 0, out[-4000:]
    commands = rl_commands(out)
    venv_python = shlex.quote(sys.executable)
    for command in commands:
        assert command.startswith(f"{venv_python} -m rl "), command


def test_an_interpreter_without_the_dependencies_stops_with_one_paragraph(tmp_path, hiding_dir):
    proc, out = dry_run(tmp_path, hide="gymnasium", hiding_dir=hiding_dir)
    assert proc.returncode != 0
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out
    paragraph = next(line for line in out.splitlines() if "cannot import" in line)
    assert "cannot import gymnasium (" in paragraph  # only what is missing
    assert sys.executable in paragraph
    for fix in ("source .venv/bin/activate", "make run", "-m pip install -e ."):
        assert fix in paragraph, paragraph
    assert not (tmp_path / "results").exists()  # stopped before the resolved config


def test_inside_the_image_the_rules_use_its_python(tmp_path, hiding_dir):
    # the host's interpreter need not have torch or mlflow then: the image's has them
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text('#!/bin/sh\necho "apptainer version 1.4.0"\n')
    (fake / "apptainer").chmod(0o755)
    proc, out = dry_run(
        tmp_path / "wd",
        "--use-apptainer",
        path=f"{fake}:{BARE_PATH}",
        hide="torch,mlflow",
        hiding_dir=hiding_dir,
    )
    assert proc.returncode == 0, out[-4000:]
    commands = rl_commands(out)
    for command in commands:
        assert command.startswith("python -m rl "), command
