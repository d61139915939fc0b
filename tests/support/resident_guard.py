"""The host-sync guard of the device-resident loop's tests: every tensor-to-Python conversion
inside a batch raises (on a GPU each would be a sync; on CUDA torch's sync debug mode also
sees the ones inside kernels), and configs/gpu.yaml shrunk to seconds with `--set`."""

import contextlib
import itertools

import pytest
import torch

from rl.core import config
from rl.ppo.envs import observation_stats
from rl.ppo.train import train

REPO = config.SCHEMA_PATH.parents[2]
GPU_CONFIG = REPO / "configs" / "gpu.yaml"
CONVERSIONS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")
CUDA_MARKS = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda(test):
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


class HostSync(AssertionError):
    """A tensor was read on the host inside a batch."""


@contextlib.contextmanager
def no_host_reads(device: torch.device):
    """Every tensor-to-Python conversion raises HostSync; on CUDA, every synchronising CUDA
    operation raises too (torch's sync debug mode)."""
    saved = {name: getattr(torch.Tensor, name) for name in CONVERSIONS}

    def forbidden(name):
        def read(self, *args, **kwargs):
            raise HostSync(f"Tensor.{name} inside a batch (shape {tuple(self.shape)})")

        return read

    for name in CONVERSIONS:
        setattr(torch.Tensor, name, forbidden(name))
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def watched_after(warmup: int, device: torch.device):
    """A batch_guard for train(): the first `warmup` batches free (compilation and graph
    capture read the host), every later one under no_host_reads; counts the batches."""
    calls = itertools.count()
    guard = lambda: no_host_reads(device) if next(calls) >= warmup else contextlib.nullcontext()  # noqa: E731
    guard.calls = calls
    return guard


def tiny(device: str = "cpu", **ppo) -> list[str]:
    """--set overrides that shrink configs/gpu.yaml to seconds: 16 worlds, batches of 8
    steps, two checkpoint segments of two batches (the second starts inside the watch)."""
    sets = ["env.num_envs=16", "ppo.frames_per_batch=128", "ppo.minibatch_size=64"]
    sets += ["ppo.total_frames=512", "ppo.checkpoint_interval_frames=256", f"device={device}"]
    sets += ["ppo.eval_interval_frames=256", "obs_norm.steps=100", "mlflow.enabled=false"]
    return sets + [f"ppo.{k}={v}" for k, v in ppo.items()]


def watched_run(device: str, tmp_path, **ppo):
    torch.set_num_threads(1)
    cfg = config.load(GPU_CONFIG, tiny(device, **ppo))
    stats = observation_stats(cfg["env"], cfg["obs_norm"]["steps"], seed=0)
    guard = watched_after(1, torch.device(device))
    result = train(cfg, 0, stats, tmp_path, batch_guard=guard)
    assert next(guard.calls) == 4, "entered once for each of the 4 batches"
    return cfg, stats, result
