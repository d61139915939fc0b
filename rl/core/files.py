"""Atomic writers: a temporary file in the same folder, fsync, rename.

A job killed at any instant leaves either the previous file or the new one,
never a torn file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False):
    """Yield a temporary path next to `path`; on success it replaces `path`.

    `keep_suffix`: the temporary name ends with `path`'s suffix too (`.tmp.mp4`), for
    writers that choose the file format by the extension (ffmpeg, Pillow).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text))


def write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as CSV, atomically."""
    return write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def require(path: str | Path, what: str) -> Path:
    """`path`, or a FileNotFoundError naming `what` and the rule that makes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing {what}: '{path}' does not exist. Run the rule that makes it "
            f"(snakemake --cores N '{path}') or pass the right path."
        )
    return path


def read_json(path: str | Path, what: str) -> Any:
    path = require(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"Corrupt {what}: '{path}' is not valid JSON ({exc}). Delete it and rerun "
            f"the rule that makes it."
        ) from None
