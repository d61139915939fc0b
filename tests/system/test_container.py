"""The training image: containers/Dockerfile built for real (podman, via the container test kit),
and the real workflow run in it with `snakemake --use-singularity` (the kit's apptainer shim)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import container_kit as kit
from support.workflow import copy_workflow

SHELL_IMAGE = f"docker://{kit.TEST_IMAGE}"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    timings = kit.build_test_image(tmp_path_factory.mktemp("image"))
    info = kit.inspect()
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    print(f"\nimage {kit.TEST_IMAGE}: {info['Size'] / 1e9:.2f} GB", file=sys.stderr)
    return {**timings, "info": info, "env": env}


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
    workdir = copy_workflow(tmp_path_factory.mktemp("wf-container"))
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
