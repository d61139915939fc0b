"""The device-resident loop of env.backend mujoco-warp (rl.ppo.resident, rl.ppo.update): no
host sync inside a batch, TorchRL's batch layout, configs/gpu.yaml at a tiny size.

On the CPU a batch is watched by making every tensor-to-Python conversion raise (`.item()`,
`float()`, `int()`, `bool()`, `.tolist()`, `.cpu()`, `.numpy()`, indexing by a tensor):
on a GPU each would be a sync. Conversions inside torch's own kernels are invisible there;
on CUDA the same batch also runs under torch.cuda.set_sync_debug_mode("error"), which sees
those (tests marked `cuda`, run by benchmarks/gpu_check.sh on a GPU machine).
"""

import subprocess
import sys
import time

import pytest
import torch
from torchrl.collectors import Collector

from rl.core import config
from rl.ppo.envs import make_training_env, observation_stats
from rl.ppo.models import make_actor_critic
from rl.ppo.resident import DeviceRollout
from rl.ppo.train import train

from support import REPO
from support.resident_guard import GPU_CONFIG, HostSync, no_host_reads, tiny, watched_after


def test_one_report_turns_several_batches_of_device_metrics_into_their_rows(tmp_path):
    """What a GPU run does once per log interval: one copy of the pending batches' metric
    vectors, one row each (the reward unscaled, cumulative wall time; the wait for the
    device counted in the last batch), and a non-finite loss stops the run naming the frame
    its batch started at."""
    from types import SimpleNamespace

    from rl.core.checkpoint import Checkpoint, TrainingDiverged
    from rl.ppo.train import Batch, report

    state = {"wall_s": 10.0, "metrics": [], "checkpointed": None}
    run = SimpleNamespace(cfg={"ppo": {"reward_scale": 0.1}}, state=state)
    run.ckpt = Checkpoint(tmp_path / "checkpoint.pt", "settings", "PPO")
    vector = lambda reward, loss: torch.tensor(  # noqa: E731
        [reward, 7, loss, 2.0, 0.0, float("nan"), 0.5, 1e-3], dtype=torch.float64
    )
    pending = [Batch(128, 1, 128, 1.0, vector(0.9, 1.0)), Batch(256, 2, 128, 2.0, vector(0.8, 3.0))]
    rows = report(run, pending, since=time.perf_counter())  # the device done at once
    assert pending == [] and [r["batch"] for r in rows] == [1, 2]
    assert [r["wall_s"] for r in rows] == pytest.approx([11.0, 13.0], abs=0.1)
    assert state["wall_s"] == rows[1]["wall_s"] and rows[1]["frames_per_s"] < 64
    assert rows[0]["train_reward_mean"] == pytest.approx(9.0) and rows[0]["frames_per_s"] == 128
    assert rows[0]["train_max_episode_length"] == 7 and rows[1]["loss_objective"] == 3.0
    assert state["metrics"] == rows
    pending = [Batch(384, 3, 128, 1.0, vector(0.7, float("nan")))]
    with pytest.raises(TrainingDiverged, match="diverged at frame 256"):
        report(run, pending, since=time.perf_counter())


def test_the_guard_catches_a_host_read():
    with pytest.raises(HostSync, match="__bool__"), no_host_reads(torch.device("cpu")):
        bool(torch.ones(()) > 0)
    with pytest.raises(HostSync, match="item"), no_host_reads(torch.device("cpu")):
        torch.ones(3).sum().item()
    assert bool(torch.ones(()))  # restored


def test_eager_torchrl_policy_reads_its_bounds_on_the_host(tmp_path):
    """Why the sync-free batch needs ppo.compile: TorchRL's TanhNormal checks its bounds with
    `bool()` in eager mode (skipped when compiled or captured in a CUDA graph)."""
    cfg = config.load(GPU_CONFIG, tiny(compile="false"))
    stats = observation_stats(cfg["env"], 100, seed=0)
    with pytest.raises(HostSync, match="__bool__"):
        train(cfg, 0, stats, tmp_path, batch_guard=watched_after(0, torch.device("cpu")))


def test_device_rollout_batches_have_the_collectors_layout():
    """DeviceRollout's batch: TorchRL's Collector's keys, shapes and dtypes ([worlds, steps]),
    each step's next observation the following step's observation unless the world
    restarted (then step count 0), and the restarted worlds reset in the same step."""
    cfg = config.load(GPU_CONFIG, tiny())
    stats = observation_stats(cfg["env"], 100, seed=0)
    env = make_training_env(cfg["env"], 0, num_envs=16, obs_stats=stats, episode_steps=[5])
    torch.manual_seed(0)
    actor, _ = make_actor_critic(cfg["ppo"], 9, env.action_spec, "cpu")
    ours = next(DeviceRollout(env, actor, 128, compile=False, device="cpu").batches(1))
    collector = Collector(env, actor, frames_per_batch=128, total_frames=128)
    theirs = next(iter(collector))
    collector.shutdown()
    assert ours.batch_size == theirs.batch_size == torch.Size([16, 8])
    keys = set(theirs.keys(True, True)) - {("collector", "traj_ids")}
    assert set(ours.keys(True, True)) == keys
    for key in keys:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
    done = ours["next", "done"][:, :-1].squeeze(-1)
    nxt, following = ours["next", "observation"][:, :-1], ours["observation"][:, 1:]
    assert torch.equal(nxt[~done], following[~done])
    assert (ours["step_count"][:, 1:][done] == 0).all() and done[:, 4].all()  # limit 5


def test_warp_with_collector_workers_is_a_config_error(ci_config):
    ci_config.setdefault("env", {})["backend"] = "mujoco-warp"
    ci_config["ppo"]["collector_workers"] = 2
    with pytest.raises(config.ConfigError, match="ppo.collector_workers.*mujoco-warp"):
        config.validate(ci_config)


def test_gpu_config_validates_with_tiny_overrides_on_the_command_line():
    cmd = [sys.executable, "-m", "rl", "validate-config", "--config", str(GPU_CONFIG)]
    for item in tiny():
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stderr
    full = config.load(GPU_CONFIG)
    assert full["env"]["backend"] == "mujoco-warp" and full["device"] == "cuda"
    assert 1024 <= full["env"]["num_envs"] <= 16384
    assert full["evaluation"]["episodes"] >= 10


# -- on a GPU (benchmarks/gpu_check.sh) ----------------------------------------------------


def test_device_rollout_continues_from_its_state_dict():
    """Batches continue the worlds' episodes (step counts go on); a rollout on other worlds
    given another's state_dict collects the batch that one collects next."""
    cfg = config.load(GPU_CONFIG, tiny())
    stats = observation_stats(cfg["env"], 100, seed=0)

    def rollout(seed: int):
        env = make_training_env(cfg["env"], seed, num_envs=4, obs_stats=stats, episode_steps=[50])
        torch.manual_seed(0)
        actor, _ = make_actor_critic(cfg["ppo"], 9, env.action_spec, "cpu")
        return DeviceRollout(env, actor, 64, compile=False, device="cpu")

    a = rollout(0)
    (first,) = a.batches(1)
    saved, rng = a.state_dict(), torch.get_rng_state()
    (second,) = a.batches(1)
    last = first["next"][:, -1]
    assert torch.equal(second["step_count"][:, 0], torch.where(last["done"], 0, last["step_count"]))
    assert (second["step_count"][:, 0] > 0).any(), "the episodes went on"
    b = rollout(3)
    b.load_state_dict(saved)
    torch.set_rng_state(rng)
    (again,) = b.batches(1)
    assert (again == second).all()
