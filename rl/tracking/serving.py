"""Long-running child servers (`ui`, `tracking-server`): a taken port found before the
start, a server kept until a stop signal, and its whole process group stopped after.

`mlflow ui` and `mlflow server` start a uvicorn server, a job runner and its consumers;
stopping only the `mlflow` process would leave those running and holding the port. So each
child starts in its own process group (session), and stopping it signals the group."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Protocol

log = logging.getLogger("rl")

# a scheduler or `kill` (TERM), Ctrl-C (INT), a closed terminal or ssh session (HUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ServerError(RuntimeError):
    """The server cannot start; the message is one paragraph naming the problem and the fix."""


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # as the server will (uvicorn): closed connections in TIME_WAIT do not block it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """The program listening on `port`, as its command line and pid, when this user may
    see it; None when it cannot be told."""
    import psutil

    try:
        listening = [
            c
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        ]
    except (psutil.AccessDenied, OSError):
        return None
    for conn in listening:
        if conn.pid is None:
            continue
        try:
            command = " ".join(psutil.Process(conn.pid).cmdline()) or "?"
        except psutil.Error:
            continue
        return f"`{command[:160]}` (pid {conn.pid})"
    return None


def require_free_port(host: str, port: int, what: str, then: str = "") -> None:
    """Raise a one-paragraph ServerError when `host:port` cannot be bound."""
    if port_free(host, port):
        return
    holder = port_holder(port)
    held = (
        f"held by {holder}"
        if holder
        else "taken (by another user's program, or by one that is still closing)"
    )
    raise ServerError(
        f"Port {port} on {host} is {held}. Stop that program (an earlier `{what}`, `mlflow "
        f"ui` or `mlflow server` is the usual one), or start this one with --port <free "
        f"port>{then}."
    )


def stop_group(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM to `proc`'s process group (started with start_new_session), SIGKILL to
    what is left after `timeout`; returns once no process of the group is left."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while group_members(proc.pid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader, so that it does not count as a member
            time.sleep(0.2)
        if not group_members(proc.pid):
            break
    proc.poll()


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies excluded)."""
    import psutil

    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float, what: str, hint: str):
    """Poll `url`/health until it answers 200; a clear error if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited ({proc.returncode}) before it answered. {hint}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServerError(
        f"{what} did not answer {url}/health within {timeout:g} s. On a loaded machine give "
        f"it more time (--start-timeout). {hint}"
    )


class Server(Protocol):
    def start(self) -> str: ...
    def alive(self) -> bool: ...
    def stop(self) -> None: ...


class _Stop(Exception):
    """A stop signal that arrived while the server was still starting."""


def serve_until_stopped(server: Server, ready: str, gone: str) -> None:
    """Start `server`, print `ready` once it answers, and keep it until a stop signal
    (STOP_SIGNALS) or its own exit (`gone` is that error); then stop it whole. A signal
    during the start ends the start; a signal during the stop is ignored."""
    stopping = threading.Event()
    starting = True

    def request_stop(signum, _frame):
        stopping.set()
        if starting:
            raise _Stop(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, request_stop)
    try:
        try:
            server.start()
        except _Stop as stop:
            log.info("%s during the start: stopping", stop)
            return
        starting = False
        print(ready, flush=True)
        while not stopping.wait(1.0):
            if not server.alive():
                raise RuntimeError(gone)
    finally:
        for sig in STOP_SIGNALS:  # nothing interrupts the shutdown
            signal.signal(sig, signal.SIG_IGN)
        server.stop()


class MlflowUi:
    """`mlflow ui` on one store, in its own process group; its output goes to this
    terminal (or to `log_file`)."""

    def __init__(
        self,
        store_uri: str,
        host: str = "127.0.0.1",
        port: int = 5000,
        start_timeout: float = 180,
        log_file: Path | None = None,
    ):
        self.store_uri, self.host, self.port = store_uri, host, port
        self.start_timeout, self.log_file = start_timeout, log_file
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        require_free_port(self.host, self.port, "make ui")
        command = [
            sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", self.store_uri,
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        out = open(self.log_file, "ab") if self.log_file else None
        try:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )  # fmt: skip
        finally:
            if out:
                out.close()
        try:
            why = f"Its log: {self.log_file}." if self.log_file else "Its output above says why."
            wait_for_health(self.uri, self.proc, self.start_timeout, "mlflow ui", why)
        except BaseException:
            self.stop()
            raise
        return self.uri

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None
