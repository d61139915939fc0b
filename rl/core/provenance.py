"""One provenance record per output folder: what made these numbers."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rl.core.config import config_hash
from rl.core.files import write_json

PACKAGES = (
    "torch",
    "torchrl",
    "tensordict",
    "gymnasium",
    "mujoco",
    "mujoco-warp",  # env.backend: mujoco-warp ("absent" without the [warp] extra)
    "warp-lang",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "seaborn",
    "mlflow",
    "snakemake",
    "rl-pipeline",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


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
        "config": cfg,
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


RECORD = "provenance.json"
# files of an output folder that are not its results: in-progress state and temporaries
NOT_OUTPUTS = ("checkpoint.pt",)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_outputs(folder: str | Path) -> dict[str, str]:
    """{file name: sha256} of the result files in `folder` (not its subfolders)."""
    folder = Path(folder)
    return {
        p.name: sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file()
        and p.name != RECORD
        and not p.name.startswith(".")
        and p.name not in NOT_OUTPUTS
    }


def input_records(paths) -> list[dict]:
    """What made each input file: its hash and the key facts of the record beside it
    (stage, variant, seed, where and when it ran), so an across-seed table says where
    every seed ran."""
    keep = (
        "stage",
        "variant",
        "seed",
        "host",
        "device",
        "gpu_name",
        "container_image",
        "git_commit",
        "git_dirty",
        "config_hash",
        "started_utc",
        "finished_utc",
    )
    out = []
    for path in paths:
        path = Path(path)
        sidecar = path.parent / RECORD
        made_by = {}
        if sidecar.is_file():
            made_by = {k: v for k, v in json.loads(sidecar.read_text()).items() if k in keep}
        out.append({"path": str(path), "sha256": sha256(path), "made_by": made_by})
    return out


def write(folder: str | Path, cfg: dict, inputs=(), **kwargs) -> dict:
    """Write `provenance.json` into `folder`, listing the hash of every result file there
    (`outputs`) and of the inputs it was made from, and return the record. Call it after
    the folder's outputs are written."""
    rec = record(cfg, **kwargs)
    rec["outputs"] = folder_outputs(folder)
    if inputs:
        rec["inputs"] = input_records(inputs)
    write_json(Path(folder) / RECORD, rec)
    return rec


def find(path: str | Path) -> tuple[Path, dict]:
    """The provenance record of a result file or folder: (record path, record)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist. Give a result file or folder.")
    sidecar = path if path.name == RECORD else (path if path.is_dir() else path.parent) / RECORD
    if not sidecar.is_file():
        raise FileNotFoundError(
            f"No provenance record for '{path}': '{sidecar}' does not exist. Every folder of "
            f"results the verbs write holds one (per-seed outputs, aggregate tables, "
            f"figures); '{path}' was not written by a pipeline verb, or its folder was "
            f"copied without its provenance.json."
        )
    return sidecar, json.loads(sidecar.read_text())


def describe(path: str | Path) -> str:
    """Human-readable provenance of a result file or folder, with a check that the file
    is still the one the record describes."""
    path = Path(path)
    sidecar, rec = find(path)
    outputs = rec.get("outputs", {})
    lines = [f"file:            {path}", f"record:          {sidecar}"]
    if path.is_file() and path.name != RECORD:
        if path.name not in outputs:
            lines.append("check:           NOT listed in the record (written after it, or by hand)")
        elif outputs[path.name] == sha256(path):
            lines.append(f"check:           sha256 matches the record ({outputs[path.name][:12]})")
        else:
            lines.append("check:           CHANGED since the record was written (sha256 differs)")
    dirty = {True: " (dirty tree)", False: " (clean tree)", None: " (dirty: unknown)"}[
        rec.get("git_dirty")
    ]
    rows = [
        ("stage / rule", f"{rec.get('stage')} / {rec.get('rule')}"),
        ("study", rec.get("study")),
        ("variant", rec.get("variant")),
        ("seed", rec.get("seed")),
        ("git commit", f"{rec.get('git_commit')}{dirty}"),
        ("config hash", rec.get("config_hash")),
        (
            "device",
            rec.get("device") + (f" ({rec['gpu_name']})" if rec.get("gpu_name") else "")
            if rec.get("device")
            else None,
        ),
        ("host", f"{rec.get('host')} ({rec.get('machine')})"),
        ("container image", rec.get("container_image") or "none (not in a container)"),
        ("started (UTC)", rec.get("started_utc")),
        ("finished (UTC)", rec.get("finished_utc")),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(rec.get("versions", {}).items()))),
    ]
    lines += [f"{k + ':':<16} {v}" for k, v in rows if v is not None]
    if outputs:
        lines.append(f"{'outputs:':<16} {', '.join(sorted(outputs))}")
    for inp in rec.get("inputs", []):
        m = inp.get("made_by", {})
        who = " ".join(
            str(x)
            for x in (
                m.get("stage"),
                m.get("variant"),
                None if m.get("seed") is None else f"seed {m['seed']}",
            )
            if x is not None
        )
        lines.append(
            f"{'input:':<16} {inp['path']} <- {who or 'no record'} on {m.get('host')} "
            f"({m.get('device')}), commit {str(m.get('git_commit'))[:12]}"
        )
    if "config" in rec:
        lines.append(f"{'config:':<16} resolved config in the record ('config' key; --json)")
    return "\n".join(lines)
