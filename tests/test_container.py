"""The training image: containers/Dockerfile built for real (podman, via the container test kit),
and the real workflow run in it with `snakemake --use-singularity` (the kit's apptainer shim)."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import container_kit as kit
import pytest
import yaml

REPO = kit.REPO
SHELL_IMAGE = f"docker://{kit.TEST_IMAGE}"
# The CUDA of PyPI's torch wheel for Linux x86_64, by version: 2.13.0 depends on
# cuda-toolkit 13.0.3 and the nvidia-*-cu13 wheels (seen in `make image`, docs/containers.md).
PYPI_TORCH_CUDA = {"2.13.0": "13.0"}


# -- fast checks: the Dockerfile and its one source of pins -------------------------------------
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
    kit.need(hadolint, "hadolint is not installed (pip install -e '.[test]')")
    proc = subprocess.run([hadolint, str(kit.DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


# -- slow: build the image, run the workflow in it ----------------------------------------------
@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    timings = kit.build_test_image(tmp_path_factory.mktemp("image"))
    info = kit.inspect()
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    print(f"\nimage {kit.TEST_IMAGE}: {info['Size'] / 1e9:.2f} GB", file=sys.stderr)
    return {**timings, "info": info, "env": env}


@pytest.mark.slow
def test_image_metadata(image):
    info = image["info"]
    labels = info["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == kit.version()
    assert labels["org.opencontainers.image.revision"] == image["commit"]  # HEAD at build time
    assert labels["org.opencontainers.image.source"]
    assert labels["io.rl-pipeline.torch-channel"] == "local"
    assert info["Config"]["User"] == "1000:1000"  # not root
    env = image["env"]
    assert env["MUJOCO_GL"] == "egl"
    want = f"rl-pipeline:{kit.version()} revision={image['commit']} torch=local"
    assert env["RL_CONTAINER_IMAGE"] == want
    assert env["PATH"].startswith("/opt/venv/bin:")


PROBE = """
import json, platform, shutil
from importlib import metadata
import mujoco
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
with mujoco.Renderer(model, 32, 32) as renderer:
    renderer.update_scene(mujoco.MjData(model))
    pixels = renderer.render()
names = %r
print(json.dumps({
    "python": platform.python_version(),
    "versions": {n: metadata.version(n) for n in names},
    "tools": [t for t in ("gcc", "cc", "g++", "make", "ld", "as") if shutil.which(t)],
    "rendered": list(pixels.shape),
}))
"""


@pytest.mark.slow
def test_image_holds_the_pinned_stack_renders_headless_and_has_no_build_tools(image):
    pins = kit.pins()
    out = kit.run_in_image("python", "-c", PROBE % list(pins))
    probe = json.loads(out.strip().splitlines()[-1])
    for name, pinned in pins.items():
        assert probe["versions"][name].split("+")[0] == pinned, name
    assert probe["versions"]["torch"].endswith("+cpu")  # the test build's torch
    assert probe["python"].startswith("3.11")
    assert probe["tools"] == []
    assert probe["rendered"] == [32, 32, 3]  # MuJoCo through EGL (Mesa here), no display


def _workdir(root: Path) -> Path:
    for name in ("Snakefile", "workflow", "configs", "rl"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    return root


def container_env() -> dict[str, str]:
    """PATH with the kit's apptainer shim; the image's own user replaced by the caller, as
    apptainer does (it always runs as the invoking user)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_CONTAINER")}
    env.pop("RL_CONTAINER_IMAGE", None)
    env["PATH"] = f"{kit.kit_dir()}:{Path(sys.executable).parent}:{env['PATH']}"
    env["APPTAINER_SHIM_PODMAN_ARGS"] = f"--user {os.getuid()}:{os.getgid()}"
    return env


@pytest.fixture(scope="module")
def container_run(image, tmp_path_factory):
    workdir = _workdir(tmp_path_factory.mktemp("wf-container"))
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default"]
    cmd += ["--cores", "2", "--use-singularity", "--configfile", "configs/ci.yaml"]
    cmd += ["--config", f"container={SHELL_IMAGE}"]
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, env=container_env(), capture_output=True, text=True, timeout=1200
    )
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    print(f"\nci study in the container: {seconds:.1f} s", file=sys.stderr)
    return workdir, proc, seconds


@pytest.mark.slow
def test_training_ran_inside_the_container(image, container_run):
    workdir, proc, _ = container_run
    cfg = yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())
    image_python = kit.run_in_image(
        "python", "-c", "import platform; print(platform.python_version())"
    )
    study = workdir / "results" / cfg["study"]
    for seed in cfg["seeds"]:
        for stage in ("obs_norm", "ppo", "eval"):
            prov = json.loads(
                (study / "default" / f"seed{seed}" / stage / "provenance.json").read_text()
            )
            # written by the code in the image: its env and its interpreter, not the host's
            assert prov["container_image"] == image["env"]["RL_CONTAINER_IMAGE"], stage
            assert prov["versions"]["python"] == image_python.strip() != platform.python_version()
            assert prov["configured_image"] == SHELL_IMAGE
    assert (study / "figures" / "ppo.png").stat().st_size > 0
    assert (study / "aggregate" / "ppo_summary.csv").is_file()
    out = proc.stdout + proc.stderr
    assert "apptainer" in out.lower() or "singularity" in out.lower()
    assert "--nv ignored" in out  # the profile's apptainer-args reached apptainer


@pytest.mark.slow
def test_rerun_in_the_container_does_nothing(container_run):
    workdir, _, _ = container_run
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default"]
    cmd += ["--cores", "2", "--use-singularity", "--configfile", "configs/ci.yaml"]
    cmd += ["--config", f"container={SHELL_IMAGE}"]
    proc = subprocess.run(
        cmd, cwd=workdir, env=container_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
