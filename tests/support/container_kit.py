"""Build the training image from containers/Dockerfile with the container test kit.

The kit (`../shared/containers/` beside the repository, or $RL_CONTAINER_KIT) brings rootful
podman, a stand-in for the `nvidia/cuda` base image (no registry is reachable here) and an
`apptainer` shim backed by podman. The image is built from the real Dockerfile with the
test-only settings it offers: TORCH_CHANNEL=local (the CPU torch wheel) and PIP_INDEX=none
(every pin from a wheelhouse the host's pip fills from its own caches, so the build downloads
nothing). Under CI=true a missing component fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from . import REPO, need

KIT_HOW = "run the container test kit's setup-podman.sh (shared/containers, or $RL_CONTAINER_KIT)"
DOCKERFILE = REPO / "containers" / "Dockerfile"
TEST_IMAGE = "localhost/rl-pipeline:cpu-test"
CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
BUILD_TIMEOUT_S = 40 * 60
# The test build's wheels, kept between sessions (build/ is git-ignored).
WHEELHOUSE = REPO / "build" / "test-wheelhouse"


def kit_dir() -> Path:
    return Path(os.environ.get("RL_CONTAINER_KIT", REPO.parent / "shared" / "containers"))


def require_kit() -> Path:
    kit = kit_dir()
    need((kit / "apptainer").is_file(), f"the container test kit is missing at {kit}", KIT_HOW)
    need(shutil.which("podman"), "podman is not installed", KIT_HOW)
    return kit


def requirements() -> list[str]:
    """The image's requirements: the runtime dependencies and the [warp] extra."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return project["dependencies"] + project["optional-dependencies"]["warp"]


def pins() -> dict[str, str]:
    """The image's pins, by package name."""
    return {re.split(r"[\[=]", d)[0]: d.split("==")[1] for d in requirements()}


def version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def base_image() -> str:
    """The tag of the first FROM in the Dockerfile (the CUDA runtime image)."""
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    raise AssertionError("no FROM in containers/Dockerfile")


def _find_links() -> list[Path]:
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            dirs += value.strip("'\"").split()
    return [Path(d.removeprefix("file://")) for d in dirs if d]


def cpu_torch_wheel() -> Path:
    """The local CPU torch wheel of the pinned version (pip's find-links folder)."""
    pattern = f"torch-{pins()['torch']}+cpu-cp311-cp311-*.whl"
    for folder in _find_links():
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    need(False, f"no {pattern} in pip's find-links folders {_find_links()}",
         "put PyTorch's CPU wheel in a folder and name it in PIP_FIND_LINKS")  # fmt: skip
    raise AssertionError  # unreachable


def wheelhouse() -> Path:
    """Every wheel the test build installs: the pins, the [warp] extra and the pip the
    Dockerfile upgrades to, made by the host's pip (its find-links give the CPU torch), so
    the build installs offline. Kept in WHEELHOUSE; pip re-checks it in seconds."""
    pip = re.search(r"pip install (pip==\S+)", DOCKERFILE.read_text()).group(1)
    cpu_torch_wheel()
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(WHEELHOUSE), *requirements(), pip]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * 60)
    assert proc.returncode == 0, f"pip wheel for the test image failed:\n{proc.stderr[-4000:]}"
    return WHEELHOUSE


def git_commit() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    return proc.stdout.decode().strip() or "unknown"


def _context(root: Path) -> Path:
    """What the Dockerfile reads from the repository, plus the wheelhouse in containers/wheels."""
    ctx = root / "context"
    skip = shutil.ignore_patterns("__pycache__", "*.whl")
    shutil.copytree(REPO / "containers", ctx / "containers", ignore=skip)
    shutil.copytree(REPO / "rl", ctx / "rl", ignore=skip)
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy2(REPO / name, ctx / name)
    wheels = ctx / "containers" / "wheels"
    wheels.mkdir(exist_ok=True)
    for wheel in wheelhouse().glob("*.whl"):
        try:
            os.link(wheel, wheels / wheel.name)  # 640 MB: no copy on the same file system
        except OSError:
            shutil.copy2(wheel, wheels / wheel.name)
    return ctx


_built: dict[str, dict] = {}


def build_test_image(root: Path, tag: str = TEST_IMAGE) -> dict:
    """Stand-in base image, then `podman build` of the real Dockerfile; returns timings.
    Once per test session: the container and cluster tests share the image."""
    if tag in _built:
        return _built[tag]
    kit = require_kit()
    t0 = time.monotonic()
    subprocess.run([str(kit / "make-standin-base.sh"), base_image()], check=True, timeout=15 * 60)
    t_base = time.monotonic() - t0
    cmd = ["podman", "build", "-f", "containers/Dockerfile", "-t", tag]
    cmd += ["--build-arg", "TORCH_CHANNEL=local", "--build-arg", "PIP_INDEX=none"]
    cmd += ["--build-arg", f"VERSION={version()}"]
    commit = git_commit()
    cmd += ["--build-arg", f"VCS_REF={commit}", "--build-arg", f"SOURCE={REPO}"]
    if CA_BUNDLE.is_file():  # TLS-intercepting proxy: pip inside the build needs its CA
        cmd += ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"]
    ctx = _context(root)
    t1 = time.monotonic()
    proc = subprocess.run(
        [*cmd, "."], cwd=ctx, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    t_build = time.monotonic() - t1
    shutil.rmtree(ctx, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"podman build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
    print(f"\nstand-in base {t_base:.1f} s, image build {t_build:.1f} s", file=sys.stderr)
    _built[tag] = {"base_s": t_base, "build_s": t_build, "commit": commit}
    return _built[tag]


def inspect(tag: str = TEST_IMAGE) -> dict:
    import json

    out = subprocess.run(
        ["podman", "image", "inspect", tag], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def run_in_image(*args: str, tag: str = TEST_IMAGE, timeout: int = 300) -> str:
    proc = subprocess.run(
        ["podman", "run", "--rm", tag, *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args} in {tag}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout
