"""Wheels for a GPU machine that reaches no registry: what benchmarks/gpu_check.sh installs
there with `pip install --no-index`.

    python benchmarks/gpu_wheels.py download   # here (make gpu-wheels): .whl/, and the carry plan
    python benchmarks/gpu_wheels.py plan       # the carry plan of what .whl/ holds
    python benchmarks/gpu_wheels.py assemble   # there (gpu_check.sh): split wheels made whole

`download` fetches, for the target interpreter (cp312, manylinux x86_64 by default), the
pinned versions of the packages the training loop needs beyond the GPU machine's own image
(which brings python3 with torch, numpy, pandas, pytest, ...: HAVE), with every dependency
those lack, each at the version this venv runs, so the GPU check runs the versions CI tests.
Torch and CUDA are never fetched: the machine's own torch build is used.

A call to such a machine carries a limited amount of files (CALL_MIB, the working tree
included), and warp-lang's wheel alone is larger. Wheels above PART_MIB are cut into parts
(`.whl/parts/<wheel>.part-aa`, ...; their sha256 in `.whl/manifest.json`), carried over
successive calls to the same machine, copied aside there (RL_WHEEL_PARTS, /tmp/rl-wheels),
and joined again by `assemble`, which checks each joined wheel's sha256 (docs/benchmarks.md,
"The GPU check").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# gymnasium with its mujoco extra (its MuJoCo envs import imageio), as pyproject.toml pins it
ROOTS = ("torchrl", "tensordict", "gymnasium[mujoco]", "mujoco", "mujoco-warp", "warp-lang",
         "jsonschema")  # fmt: skip
# The GPU machine's image (docs/benchmarks.md): what it has, so neither it nor its
# dependencies are fetched. torch and CUDA's own wheels are there by definition.
HAVE = {
    "torch", "triton", "numpy", "pandas", "scipy", "matplotlib", "pyyaml", "pytest", "tqdm",
    "packaging", "cloudpickle", "typing-extensions", "absl-py", "etils", "attrs", "fsspec",
    "zipp", "filelock", "jinja2", "sympy", "networkx", "setuptools", "pillow", "psutil",
    "imageio",
}  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
PART_MIB = 50
CALL_MIB = 52  # the wheels one call carries: 64 MiB less the working tree and a margin


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["warp"]
    return {_norm(re.split(r"[\[=]", p)[0]): p.split("==")[1] for p in pins}


def _requires(name: str, python: str, extras: tuple[str, ...] = ()) -> list[str]:
    """The runtime dependencies of installed `name` for `python` on Linux, with those of
    `extras` (each as name or name[extra])."""
    from packaging.requirements import Requirement

    env = {"python_version": python, "sys_platform": "linux", "platform_system": "Linux"}
    env |= {"platform_machine": "x86_64"}
    out = []
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        marker_ok = req.marker is None or any(
            req.marker.evaluate(env | {"extra": e}) for e in ("", *extras)
        )
        if marker_ok:
            extra = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            out.append(_norm(req.name) + extra)
    return out


def needed(python: str) -> dict[str, str]:
    """name -> version of ROOTS and the closure of their dependencies, minus HAVE."""
    pins, found, todo, seen = _pins(), {}, list(ROOTS), set()
    while todo:
        name = todo.pop()
        base, _, extra = name.partition("[")
        extras = tuple(e for e in extra.rstrip("]").split(",") if e)
        if base in HAVE or base.startswith("nvidia-") or (base, extras) in seen:
            continue
        seen.add((base, extras))
        found[base] = pins.get(base) or metadata.version(base)
        todo += _requires(base, python, extras)
    return dict(sorted(found.items()))


def download(dest: Path, python: str) -> None:
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    specs = [f"{n}=={v}" for n, v in needed(python).items()]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python, "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    print("pip download", " ".join(specs), flush=True)
    subprocess.run(cmd + specs, check=True)
    split(dest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split(dest: Path) -> None:
    """Cut every wheel above PART_MIB into parts under dest/parts; write the manifest."""
    parts = dest / "parts"
    parts.mkdir(exist_ok=True)
    manifest = {"part_mib": PART_MIB, "split": {}}
    for wheel in sorted((dest / "wheels").glob("*.whl")):
        if wheel.stat().st_size <= PART_MIB << 20:
            continue
        names = []
        with open(wheel, "rb") as f:
            for suffix in (f"{a}{b}" for a in "abcdefghij" for b in "abcdefghijklmnopqrstuvwxyz"):
                chunk = f.read(PART_MIB << 20)
                if not chunk:
                    break
                (parts / f"{wheel.name}.part-{suffix}").write_bytes(chunk)
                names.append(f"{wheel.name}.part-{suffix}")
        manifest["split"][wheel.name] = {"sha256": _sha256(wheel), "parts": names}
        wheel.unlink()
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    plan(dest)


def plan(dest: Path) -> list[list[str]]:
    """Calls to the GPU machine, each carrying at most CALL_MIB of .whl: the parts first,
    one or more per call; the last call carries the whole wheels and the manifest too and
    runs the check."""
    mib = lambda p: p.stat().st_size / 2**20  # noqa: E731
    small = [dest / "wheels", dest / "manifest.json"]
    last = sum(mib(w) for w in (dest / "wheels").glob("*.whl")) + 0.1
    calls, current, size = [], [], 0.0
    for part in sorted((dest / "parts").glob("*.part-*")):
        if current and size + mib(part) > CALL_MIB:
            calls.append(current)
            current, size = [], 0.0
        current.append(part)
        size += mib(part)
    if current and size + last <= CALL_MIB:
        calls.append(current + small)
    else:
        calls += [current, small] if current else [small]
    rel = [[str(p.relative_to(dest.parent)) for p in call] for call in calls]
    print(f"{len(rel)} calls to the GPU machine (<= {CALL_MIB} MiB of wheels each):")
    for i, call in enumerate(rel, 1):
        what = "gpu_check.sh" if i == len(rel) else "copy the parts to $RL_WHEEL_PARTS"
        print(f"  call {i}: carry {call}  ({what})")
    return rel


def assemble(dest: Path, parts_dirs: list[Path]) -> None:
    """Join each split wheel of the manifest from its parts (found in dest/parts or any of
    `parts_dirs`) into dest/wheels, checking its sha256."""
    manifest_path = dest / "manifest.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    for wheel, entry in manifest["split"].items():
        out = dest / "wheels" / wheel
        if out.is_file() and _sha256(out) == entry["sha256"]:
            continue
        folders = [dest / "parts", *parts_dirs]
        missing = [p for p in entry["parts"] if not any((d / p).is_file() for d in folders)]
        if missing:
            sys.exit(f"{wheel}: parts {missing} are in none of {[str(d) for d in folders]}")
        with open(out, "wb") as f:
            for part in entry["parts"]:
                f.write(next(d / part for d in folders if (d / part).is_file()).read_bytes())
        if _sha256(out) != entry["sha256"]:
            out.unlink()
            sys.exit(f"{wheel}: the joined parts do not match its sha256 (a part is damaged)")
        print(f"joined {wheel} from {len(entry['parts'])} parts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["download", "plan", "assemble", "list"])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--parts", type=Path, action="append", default=[], help="assemble")
    args = parser.parse_args()
    if args.action == "download":
        download(args.dest, args.python_version)
    elif args.action == "plan":
        plan(args.dest)
    elif args.action == "list":
        for name, version in needed(args.python_version).items():
            print(f"{name}=={version}")
    else:
        assemble(args.dest, args.parts)


if __name__ == "__main__":
    main()
