import subprocess
import sys
import tomllib

import yaml

from support import REPO


def _pyproject_pins() -> list[str]:
    """The runtime dependencies and the [warp] extra (environment.yml and the image carry
    both)."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return project["dependencies"] + project["optional-dependencies"]["warp"]


def test_every_dependency_is_pinned_exactly():
    for req in _pyproject_pins():
        assert "==" in req, f"{req} is not pinned"
    assert "torch==2.13.0" in _pyproject_pins()


def test_environment_yml_has_the_package_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(_pyproject_pins())
    assert "python=3.11" in env["dependencies"]


def test_installed_versions_match_the_pins():
    from importlib import metadata

    for req in _pyproject_pins():
        name, version = req.split("==")
        name = name.split("[")[0]
        assert metadata.version(name).split("+")[0] == version, name


def test_results_are_ignored_but_the_folder_is_kept():
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/x/y.csv"], cwd=REPO)
    assert ignored.returncode == 0
    assert (REPO / "results" / ".gitkeep").exists()


def test_ruff_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(REPO)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout
