"""The device-resident loop of env.backend mujoco-warp trained for real on configs/gpu.yaml
shrunk to seconds: compiled with no host read in any batch, deterministic, resumable; the
CUDA ones run on a GPU machine (benchmarks/gpu_check.sh)."""

import pandas as pd
import pytest
import torch

from rl.core import config
from rl.ppo.envs import observation_stats
from rl.ppo.train import train

from support.resident_guard import CUDA_MARKS, GPU_CONFIG, cuda, tiny, watched_run
from support.training import table


def test_gpu_config_compiled_trains_without_a_host_sync_in_any_batch(tmp_path):
    """configs/gpu.yaml (compiled policy and minibatch step, the lr a tensor under a cosine
    schedule) at a tiny size on the CPU: every batch after the first (compilation) reads
    nothing on the host, a segment checkpoint included; the run reports and evaluates."""
    cfg, _, result = watched_run("cpu", tmp_path, anneal_lr="true")
    assert cfg["env"]["backend"] == "mujoco-warp" and cfg["ppo"]["compile"]
    rows = table(result)
    assert len(rows) == 4 and rows["loss_critic"].notna().all()
    # the lr is a float32 tensor there: the rows hold the value Adam used
    assert rows["lr"].is_monotonic_decreasing
    assert rows["lr"].iloc[0] == pytest.approx(cfg["ppo"]["lr"], rel=1e-6)
    assert [e["frames"] for e in result["state"]["eval"]] == [256, 512]


@cuda
def test_cuda_graphed_loop_has_no_sync_in_any_batch(tmp_path):
    """The same run on CUDA: compiled and CUDA-graphed (policy and minibatch step), warp's
    physics graph, under torch's sync debug mode after the first batch."""
    _, _, result = watched_run("cuda", tmp_path, anneal_lr="true")
    assert result["device"].type == "cuda" and len(result["state"]["metrics"]) == 4


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA_MARKS)])
def test_resident_run_is_deterministic_and_resumes_exactly(device, tmp_path):
    """Same seed, same numbers; a run resumed from its segment checkpoint, or from a
    minute-triggered one inside the segment, continues the worlds' episodes and ends as the
    uninterrupted one. On the CPU eager (seconds), on CUDA as configured (compiled and
    graphed)."""
    torch.set_num_threads(1)
    cfg = config.load(GPU_CONFIG, tiny(device, **({"compile": "false"} if device == "cpu" else {})))
    stats = observation_stats(cfg["env"], 100, seed=0)
    a = train(cfg, 0, stats, tmp_path / "a")
    b = train(cfg, 0, stats, tmp_path / "b")
    pd.testing.assert_frame_equal(table(a), table(b))
    assert a["checkpoint"].exists()  # written at 256 of 512 frames, kept by train()
    resumed = train(cfg, 0, stats, tmp_path / "a")
    pd.testing.assert_frame_equal(table(resumed), table(a))
    for key, value in a["actor"].state_dict().items():
        assert torch.equal(value, resumed["actor"].state_dict()[key]), key

    class Killed(Exception):
        pass

    def stop(row, _eval):
        if row["batch"] == 4:  # the last checkpoint: after batch 3, inside the second segment
            raise Killed

    cfg["ppo"]["checkpoint_interval_minutes"] = 1e-9  # after every batch
    with pytest.raises(Killed):
        train(cfg, 0, stats, tmp_path / "c", on_batch=stop)
    resumed = train(cfg, 0, stats, tmp_path / "c")
    pd.testing.assert_frame_equal(table(resumed), table(a))
    for key, value in a["actor"].state_dict().items():
        assert torch.equal(value, resumed["actor"].state_dict()[key]), key


@cuda
def test_cuda_with_cpu_mujoco_and_two_collector_processes_trains(ci_config, tmp_path):
    """device: cuda with the gymnasium backend and ppo.collector_workers 2 (fast.yaml's
    recipe on a GPU machine): worker processes with CUDA policies."""
    ci_config.update(device="cuda")
    ci_config["ppo"].update(collector_workers=2, total_frames=1024)
    cfg = config.validate(ci_config)
    stats = observation_stats(cfg["env"], 100, seed=0)
    result = train(cfg, 0, stats, tmp_path)
    assert result["device"].type == "cuda" and len(result["state"]["metrics"]) == 2
