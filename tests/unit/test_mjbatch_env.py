"""env.backend mujoco-batch (rl.ppo.mjbatch.BatchCopies) against gymnasium's MuJoCo tasks
(TrainingCopies steps gymnasium's own envs): equal bit for bit over whole closed-loop runs,
across resets, time limits, threads and saved states."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torchrl.envs.utils import check_env_specs

from rl.core import config
from rl.ppo.envs import TrainingCopies, make_training_env, observation_stats
from rl.ppo.mjbatch import BatchCopies
from rl.ppo.train import train

from support.training import assert_same_run, table

TASKS = ["InvertedDoublePendulum-v5", "InvertedPendulum-v5"]
# time limits short enough that truncations come between the terminations
LIMITS = [7, 30, 1000, 45, 12, 1000]


def _policy(obs_dim: int, seed: int) -> nn.Module:
    """A fixed random controller: the actions follow the observations (a closed loop), so
    any difference in an observation shows in every later step."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(obs_dim, 16), nn.Tanh(), nn.Linear(16, 1), nn.Tanh())


def _rollout(env, policy, steps: int, seed: int = 3):
    env.set_seed(seed)
    with torch.no_grad():
        return env.rollout(
            steps,
            lambda td: td.set("action", policy(td["observation"])),
            break_when_any_done=False,
            auto_reset=False,
            tensordict=env.current(),
        )


def _assert_equal(a, b) -> None:
    for key in [
        "observation",
        ("next", "observation"),
        ("next", "reward"),
        ("next", "terminated"),
        ("next", "truncated"),
        ("next", "step_count"),
    ]:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("task", TASKS)
def test_closed_loop_runs_are_gymnasiums_bit_for_bit(task):
    gym = TrainingCopies(task, LIMITS, reward_scale=0.1)
    ours = BatchCopies(task, LIMITS, reward_scale=0.1)
    policy = _policy(gym.observation_spec["observation"].shape[-1], seed=0)
    a, b = _rollout(gym, policy, 400), _rollout(ours, policy, 400)
    _assert_equal(a, b)
    ends = a["next", "done"].sum().item()
    assert ends > 30 and a["next", "truncated"].any() and a["next", "terminated"].any()


def test_starts_noise_normalisation_and_threads_are_gymnasiums():
    task, noise = TASKS[0], 0.3
    stats = {"loc": np.linspace(-0.2, 0.2, 9).tolist(), "scale": np.linspace(0.5, 2, 9).tolist()}
    gym = TrainingCopies(task, LIMITS, obs_stats=stats, make_kwargs={"reset_noise_scale": noise})
    ours = BatchCopies(task, LIMITS, obs_stats=stats, reset_noise_scale=noise, threads=2)
    policy = _policy(9, seed=1)
    _assert_equal(_rollout(gym, policy, 300, seed=11), _rollout(ours, policy, 300, seed=11))


@pytest.mark.parametrize("source", [TrainingCopies, BatchCopies])
def test_a_saved_state_continues_the_same_episodes(source):
    """A BatchCopies given another's state (its own kind's, or gymnasium's copies': the
    format is one) steps on as the saved one does."""
    task = TASKS[0]
    policy = _policy(9, seed=2)
    first = source(task, LIMITS)
    _rollout(first, policy, 57)
    saved = first.save_state()
    ours = BatchCopies(task, LIMITS)
    ours.set_seed(99)
    ours.load_state(saved)
    with torch.no_grad():
        run = lambda env: env.rollout(  # noqa: E731
            200,
            lambda td: td.set("action", policy(td["observation"])),
            break_when_any_done=False,
            auto_reset=False,
            tensordict=env.current(),
        )
        _assert_equal(run(first), run(ours))


def test_the_training_env_passes_torchrl_spec_checks():
    env = make_training_env(
        {
            "id": TASKS[0],
            "num_envs": 4,
            "max_episode_steps": 1000,
            "backend": "mujoco-batch",
            "threads": 1,
        },
        seed=0,
    )
    assert isinstance(env, BatchCopies)
    check_env_specs(env)


def test_a_task_it_cannot_compute_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="env.backend: gymnasium"):
        BatchCopies("Pendulum-v1", [10])


@pytest.mark.parametrize("task", TASKS)
def test_the_float64_numbers_under_the_float32_outputs_are_gymnasiums(task):
    """Raw observations and rewards (float64, before normalisation and the float32 cast,
    which hide a last-bit difference): equal over 48,000 closed-loop copy-steps."""
    limits = [50, 1000, 200, 120] * 8
    gym, ours = TrainingCopies(task, limits), BatchCopies(task, limits)
    for env in (gym, ours):
        env.set_seed(5)
    rng = np.random.default_rng(0)
    gain = rng.normal(0, 1, (gym._obs.shape[1], 1))
    for _ in range(1500):
        action = np.tanh(gym._obs @ gain + rng.normal(0, 0.3, (32, 1))).astype(np.float32)
        expected, got = gym._step_copies(action), ours._step_copies(action)
        assert np.array_equal(gym._obs, ours._obs)
        assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
        ended = np.flatnonzero(expected[1])
        if len(ended):
            gym._reset_copies(ended)
            ours._reset_copies(ended)


class Killed(Exception):
    """Stands for a kill between a checkpoint and the next one."""


def test_training_on_it_gives_the_gymnasium_backends_numbers(ci_config, tmp_path, caplog):
    """The PPO loop on mujoco-batch (2 physics threads) and on gymnasium (one process):
    every per-batch metric, evaluation and weight equal; and a gymnasium run killed after
    a checkpoint, resumed on mujoco-batch, ends as the uninterrupted one."""
    torch.set_num_threads(1)
    ci_config["ppo"].update(
        frames_per_batch=256, total_frames=768, eval_interval_frames=512, collector_workers=1
    )
    ci_config["ppo"]["checkpoint_interval_minutes"] = 1e-9  # after every batch
    cfgs = {}
    for backend in ("gymnasium", "mujoco-batch"):
        ci_config.setdefault("env", {}).update(backend=backend, threads=2)
        cfgs[backend] = config.validate(copy.deepcopy(ci_config))
    stats = observation_stats(cfgs["gymnasium"]["env"], 100, seed=0)
    gym = train(cfgs["gymnasium"], 0, stats, tmp_path / "gymnasium")
    ours = train(cfgs["mujoco-batch"], 0, stats, tmp_path / "mujoco-batch")
    assert_same_run(ours, gym)
    assert len(table(gym, "metrics")) == 3 and len(table(gym, "eval")) == 2

    def stop(row, _eval):
        if row["batch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train(cfgs["gymnasium"], 0, stats, tmp_path / "resumed", on_batch=stop)
    caplog.set_level("INFO", logger="rl")
    assert_same_run(train(cfgs["mujoco-batch"], 0, stats, tmp_path / "resumed"), gym)
    assert "resuming from checkpoint" in caplog.text and "at frame 256" in caplog.text


def test_a_config_naming_a_task_it_cannot_compute_is_refused(ci_config):
    ci_config.setdefault("env", {}).update(backend="mujoco-batch", id="Pendulum-v1")
    ci_config["video"] = {"enabled": False}
    with pytest.raises(config.ConfigError, match=r"env.backend.*Set env.backend to .*gymnasium"):
        config.validate(ci_config)
