"""Kill a real run with SIGKILL at a random moment after its first checkpoint, resume it
the three ways users do, and check the result equals an uninterrupted run's: the metrics
table (timing columns aside) and the final weights, bit for bit. The uninterrupted run
checkpoints on the frame count; two of the killed runs checkpoint on the minutes trigger
only (a checkpoint every ~0.1 s, wherever it falls, none on a frame count), so they resume
from a minute-triggered checkpoint in the middle of their episodes."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from support.resume_checks import assert_one_training_run, assert_same_training, training_result

SEED_DIR = Path("results/resume/default/seed0")
CKPT = SEED_DIR / "ppo" / "checkpoint.pt"


def _config(workdir: Path, minutes: bool = False) -> Path:
    cfg = yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())
    cfg["study"] = "resume"
    cfg["seeds"] = [0]
    cfg["ppo"].update(
        total_frames=12288,
        frames_per_batch=512,
        checkpoint_interval_frames=1024,
        eval_interval_frames=4096,
    )
    if minutes:  # checkpoints on the minutes trigger alone
        cfg["ppo"].update(checkpoint_interval_frames=10**9, checkpoint_interval_minutes=0.002)
    cfg["evaluation"]["episodes"] = 2
    path = workdir / "configs" / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(workdir: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            *args,
            "--configfile",  # last: it takes every word after it
            "configs/resume.yaml",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def _finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-6000:]
    return out


def _wait_for_checkpoint_then(workdir: Path, proc: subprocess.Popen) -> float:
    """Return once the first checkpoint exists and a random extra moment has passed."""
    deadline = time.monotonic() + 600
    while not (workdir / CKPT).exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.05)
    delay = random.uniform(0.0, 1.5)
    time.sleep(delay)
    return delay


def _train_pids(workdir: Path) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", "rl train-ppo"], capture_output=True, text=True
    ).stdout.split()
    pids = []
    for pid in map(int, out):
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == workdir.resolve():
                pids.append(pid)
        except OSError:
            continue
    return pids


def _result(workdir: Path):
    return training_result(workdir / SEED_DIR)


@pytest.fixture(scope="module")
def reference(make_workdir):
    workdir = make_workdir("resume-ref")
    _config(workdir)
    _finish(_snakemake(workdir))
    return _result(workdir)


def test_whole_workflow_killed_then_rerun_incomplete(make_workdir, reference):
    workdir = make_workdir("resume-1")
    _config(workdir)
    proc = _snakemake(workdir)
    _wait_for_checkpoint_then(workdir, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in _train_pids(workdir):  # a job may outlive its killed scheduler
        os.kill(pid, signal.SIGKILL)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--unlock",
            "--cores",
            "1",
            "--configfile",
            "configs/resume.yaml",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    _finish(_snakemake(workdir, "--rerun-incomplete"))
    log = (workdir / "results/resume/logs/train_ppo/default-seed0.log").read_text()
    assert "resuming from checkpoint" in log
    assert_same_training(_result(workdir), reference)
    assert_one_training_run(workdir / "results/resume", batches=12288 // 512)


def test_training_process_killed_and_retried(make_workdir, reference):
    workdir = make_workdir("resume-2")
    _config(workdir, minutes=True)
    proc = _snakemake(workdir, "--retries", "1")
    _wait_for_checkpoint_then(workdir, proc)
    pids = _train_pids(workdir)
    assert pids, "no training process found to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out = _finish(proc)
    assert "Trying to restart job" in out or "attempt" in out.lower()
    log = (workdir / "results/resume/logs/train_ppo/default-seed0.log").read_text()
    assert "resuming from checkpoint" in log
    assert_same_training(_result(workdir), reference)
    assert_one_training_run(workdir / "results/resume", batches=12288 // 512)


def test_verb_killed_and_rerun_by_hand(make_workdir, reference):
    workdir = make_workdir("resume-3")
    cfg_path = _config(workdir, minutes=True)
    # the stats file and the MLflow store come from the workflow, as in a real study
    _finish(_snakemake(workdir, str(SEED_DIR / "obs_norm" / "stats.json")))
    line = [
        sys.executable,
        "-m",
        "rl",
        "train-ppo",
        "--config",
        str(cfg_path),
        "--seed",
        "0",
        "--threads",
        "1",
        "--obs-stats",
        str(SEED_DIR / "obs_norm" / "stats.json"),
        "--out-dir",
        str(SEED_DIR / "ppo"),
    ]
    proc = subprocess.Popen(
        line,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    _wait_for_checkpoint_then(workdir, proc)
    proc.kill()
    proc.wait()
    rerun = subprocess.run(line, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "resuming from checkpoint" in rerun.stderr
    assert_same_training(_result(workdir), reference)


def _pendulum_line(cfg_path: Path, out_dir: str) -> list[str]:
    return [sys.executable, "-m", "rl", "train-pendulum", "--config", str(cfg_path),
            "--seed", "0", "--threads", "1", "--out-dir", out_dir]  # fmt: skip


def _pendulum_result(workdir: Path, out_dir: str):
    table = pd.read_csv(workdir / out_dir / "train_metrics.csv")
    weights = torch.load(workdir / out_dir / "policy.pt", weights_only=True)
    return table.drop(columns=["iters_per_s", "wall_s"]), weights


def test_pendulum_killed_and_rerun_by_hand(make_workdir):
    """train-pendulum SIGKILLed at a random moment after its first checkpoint: the rerun
    of the same line ends with the uninterrupted run's table (timing aside) and weights."""
    workdir = make_workdir("resume-pendulum")
    cfg_path = _config(workdir)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["pendulum"].update(iterations=200, checkpoint_interval_iterations=10)
    cfg_path.write_text(yaml.safe_dump(cfg))
    reference = "results/resume/default/seed0/pendulum-reference"
    out = "results/resume/default/seed0/pendulum"
    done = subprocess.run(
        _pendulum_line(cfg_path, reference), cwd=workdir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    proc = subprocess.Popen(
        _pendulum_line(cfg_path, out),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not (workdir / out / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.5))
    assert proc.poll() is None, "the run finished before it could be killed: lengthen it"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / out / "policy.pt").exists()
    rerun = subprocess.run(
        _pendulum_line(cfg_path, out), cwd=workdir, capture_output=True, text=True, timeout=900
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "resuming from checkpoint" in rerun.stderr, rerun.stderr[-3000:]
    a, b = _pendulum_result(workdir, out), _pendulum_result(workdir, reference)
    pd.testing.assert_frame_equal(a[0], b[0])
    _assert_same_tensors(a[1], b[1])


PENDULUM_TIMING_KEYS = {"train_wall_s"}  # named timing fields of the weights file


def _assert_same_tensors(a, b, where: str = "policy") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in set(a) - PENDULUM_TIMING_KEYS:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, where
