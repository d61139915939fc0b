"""The training image's recipe, read without building it: containers/Dockerfile installs
exactly pyproject.toml's pins, the image names agree, hadolint is clean. The build itself:
tests/system/test_container.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from support import REPO, need
from support import container_kit as kit

# The CUDA of PyPI's torch wheel for Linux x86_64, by version: 2.13.0 depends on
# cuda-toolkit 13.0.3 and the nvidia-*-cu13 wheels (seen in `make image`, docs/containers.md).
PYPI_TORCH_CUDA = {"2.13.0": "13.0"}


def test_dockerfile_installs_exactly_the_pyproject_pins():
    text = kit.DOCKERFILE.read_text()
    # the dependencies are read from pyproject.toml at build time, never listed a second time
    assert 'tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]' in text
    assert "pip install -r /tmp/requirements.txt" in text
    for name in kit.pins():
        pinned_again = re.search(rf"\b{re.escape(name)}\s*==\s*\d", text)
        assert not pinned_again, f"{name} pinned in the Dockerfile"
    # the torch build: PyPI's wheel (a CUDA build) whose CUDA is the base image's, or the tests'
    # local wheel; both ARG lines and the Makefile's default say the same
    base = kit.base_image()
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+(-cudnn)?-runtime-ubuntu22\.04", base)
    assert m, f"{base}: want a short-named nvidia/cuda:*-runtime-ubuntu22.04 tag"
    channels = set(re.findall(r"^ARG TORCH_CHANNEL=(\S+)$", text, re.M))
    makefile = re.search(r"^TORCH_CHANNEL \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert channels == {"pypi"} == {makefile.group(1)}, channels
    torch_pin = kit.pins()["torch"]
    assert PYPI_TORCH_CUDA.get(torch_pin) == f"{m.group(1)}.{m.group(2)}", (
        f"which CUDA is PyPI's torch {torch_pin} for Linux x86_64 (its nvidia-* dependencies)? "
        f"Record it in PYPI_TORCH_CUDA and make the base image's CUDA the same"
    )


def test_image_names_agree():
    """Makefile's image, the Apptainer recipe's default and the config's default container."""
    schema = yaml.safe_load((REPO / "rl" / "core" / "config.schema.yaml").read_text())
    default = schema["properties"]["container"]["default"]
    makefile = (REPO / "Makefile").read_text()
    image = re.search(r"^IMAGE \?= (\S+)$", makefile, re.M).group(1)
    assert default == f"docker://{image}"
    recipe = (REPO / "containers" / "rl-pipeline.def").read_text()
    assert re.search(r"^Bootstrap: docker-daemon$", recipe, re.M)
    assert f"IMAGE={image}" in recipe


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    need(hadolint, "hadolint is not installed", "pip install -e '.[test]'")
    proc = subprocess.run([hadolint, str(kit.DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
