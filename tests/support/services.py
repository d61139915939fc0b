"""Ports and folders for the services the system tests start."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_folder() -> Path:
    """A fresh folder for a tracking server: under /tmp, not pytest's tmp_path, whose root is
    private to root, and PostgreSQL (which refuses root) runs as `postgres` there."""
    root = Path(tempfile.mkdtemp(prefix="rl-tracking-"))
    root.chmod(0o755)
    return root


def require_postgres() -> None:
    """PostgreSQL's server programs, which the tracking server starts (skip or, in CI, fail)."""
    from rl.tracking.server import ServerError, postgres_bindir

    from . import need

    try:
        found = postgres_bindir()
    except ServerError:
        found = None
    need(
        found, "PostgreSQL's server (initdb, pg_ctl) is not installed", "apt-get install postgresql"
    )
