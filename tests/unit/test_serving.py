"""Child servers' guards (rl/tracking/serving.py): a taken port is found before a start,
named with its holder; stopping a server's process group leaves none of it behind."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rl.tracking import serving


def test_a_taken_port_names_the_holder_and_the_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not serving.port_free("127.0.0.1", port)
        with pytest.raises(serving.ServerError) as err:
            serving.require_free_port("127.0.0.1", port, "make ui")
    message = str(err.value)
    assert f"Port {port} on 127.0.0.1 is held by `" in message
    assert f"(pid {os.getpid()})" in message  # this test's process listens there
    assert "--port <free port>" in message and "\n" not in message
    assert serving.port_free("127.0.0.1", port)  # closed: free again


def _group_leader(setup: str) -> subprocess.Popen:
    """A child in its own session that runs `setup`, says so, and sleeps."""
    script = (
        f"import signal, subprocess, sys, time\n{setup}\nprint('up', flush=True)\ntime.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout.readline() == b"up\n"
    return proc


def test_stop_group_stops_the_child_and_what_it_started():
    """A child that started a grandchild: both are gone when stop_group returns."""
    proc = _group_leader("subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])")
    assert len(serving.group_members(proc.pid)) == 2
    serving.stop_group(proc, timeout=10)
    assert serving.group_members(proc.pid) == []
    assert proc.returncode == -signal.SIGTERM


def test_stop_group_kills_a_child_that_ignores_sigterm():
    proc = _group_leader("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    t0 = time.monotonic()
    serving.stop_group(proc, timeout=1)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 < 10
