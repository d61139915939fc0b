"""env.backend: mujoco-warp (rl.warp_env.WarpCopies) against gymnasium's MuJoCo, on the CPU.

Tolerances: MuJoCo Warp computes in float32, gymnasium's MuJoCo in float64. The states are
drawn in float32 and handed to both, so both start from the same numbers. One env step
(5 RK4 steps of 0.01 s) from the same state and action, 64 states: observations within
2e-5, rewards within 2e-4, the same terminations (measured: 6.1e-6 and 1.1e-6). Whole
episodes from the same start under the same actions (open loop: the pendulum falls within
11-17 steps): observations and rewards within 1e-4 at every step, termination at the same
step (measured: 4e-6 and 1.4e-6). Longer trajectories drift apart as float32 rounding grows
in a chaotic system.
"""

import gymnasium
import numpy as np
import pandas as pd
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from rl.core import config
from rl.ppo.envs import make_training_env, observation_stats
from rl.ppo.train import TIMING_COLUMNS, train
from rl.ppo.warp import WarpCopies  # needs the [warp] extra, which make install installs

TASK = "InvertedDoublePendulum-v5"


@pytest.fixture(scope="module")
def reference():
    env = gymnasium.make(TASK).unwrapped
    env.reset(seed=0)
    yield env
    env.close()


def _states(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 states (n, 3) over the task's range: angles up to +-0.6 rad, velocities up to
    a few rad/s, and the cart near its +-1 limits in a quarter of them (where the constraint
    force, the last observation, is not zero)."""
    rng = np.random.default_rng(seed)
    qpos = rng.uniform(-0.6, 0.6, (n, 3))
    qpos[: n // 4, 0] = rng.choice([-1.0, 1.0], n // 4) * rng.uniform(0.985, 1.0, n // 4)
    qvel = rng.normal(0.0, 1.5, (n, 3))
    return qpos.astype(np.float32), qvel.astype(np.float32)


def _step_reference(ref, qpos, qvel, action):
    ref.set_state(qpos.astype(np.float64), qvel.astype(np.float64))
    obs, reward, terminated, truncated, _ = ref.step(action.astype(np.float32))
    assert not truncated
    return obs, reward, terminated


def test_one_step_from_the_same_states_matches_gymnasium(reference):
    n = 64
    qpos, qvel = _states(n, seed=0)
    actions = np.random.default_rng(1).uniform(-1, 1, (n, 1)).astype(np.float32)
    env = WarpCopies(TASK, [1000] * n)
    env.set_state(torch.from_numpy(qpos), torch.from_numpy(qvel))
    for k in range(n):  # the reset observation (gymnasium's set_state, then _get_obs)
        reference.set_state(qpos[k].astype(np.float64), qvel[k].astype(np.float64))
        np.testing.assert_allclose(env.raw_observation()[k], reference._get_obs(), atol=2e-5)
    out = env.step(TensorDict({"action": torch.from_numpy(actions)}, [n]))["next"]
    raw = env.raw_observation().numpy()
    expected = [_step_reference(reference, qpos[k], qvel[k], actions[k]) for k in range(n)]
    obs = np.stack([e[0] for e in expected])
    np.testing.assert_allclose(raw, obs, atol=2e-5)
    np.testing.assert_allclose(
        out["reward"].squeeze(-1).numpy(), [e[1] for e in expected], atol=2e-4
    )
    assert out["terminated"].squeeze(-1).tolist() == [e[2] for e in expected]
    assert (obs[:, 8] != 0).sum() >= 4, "some states load the cart's limit constraint"
    assert 0 < sum(e[2] for e in expected) < n, "both outcomes occur among these states"


def test_whole_episodes_from_the_same_start_and_actions_match_gymnasium(reference):
    """Open loop from near-upright starts: the pendulum falls in 11-17 steps; every step
    until gymnasium terminates agrees, and warp terminates at the same step."""
    n, steps = 16, 60
    qpos, qvel = _states(n, seed=2)
    qpos[:, 0] *= 0.5
    qpos[:, 1:] *= np.where(np.arange(n) < n // 2, 0.01, 0.1)[:, None]  # long and short ones
    qvel *= 0.01
    actions = np.random.default_rng(3).uniform(-0.05, 0.05, (steps, n, 1)).astype(np.float32)
    env = WarpCopies(TASK, [1000] * n)
    env.set_state(torch.from_numpy(qpos), torch.from_numpy(qvel))
    warp = []
    for t in range(steps):
        out = env.step(TensorDict({"action": torch.from_numpy(actions[t])}, [n]))["next"]
        warp.append((env.raw_observation().numpy(), out["reward"], out["terminated"]))
    lengths = []
    for k in range(n):
        reference.set_state(qpos[k].astype(np.float64), qvel[k].astype(np.float64))
        for t in range(steps):
            obs, reward, terminated, _, _ = reference.step(actions[t, k])
            np.testing.assert_allclose(warp[t][0][k], obs, atol=1e-4, err_msg=f"world {k} t {t}")
            assert warp[t][1][k].item() == pytest.approx(reward, abs=1e-4)
            assert warp[t][2][k].item() == terminated, f"world {k} t {t}"
            if terminated:
                break
        lengths.append(t + 1)
    assert max(lengths) > 12 and all(n < steps for n in lengths)


def test_the_simulator_arrays_are_torch_tensors_without_copies():
    env = WarpCopies(TASK, [1000] * 3)
    assert env._qpos.data_ptr() == env._data.qpos.ptr
    assert env._ctrl.data_ptr() == env._data.ctrl.ptr
    assert env._site_xpos.data_ptr() == env._data.site_xpos.ptr


def test_partial_reset_leaves_the_other_worlds_untouched():
    """Resetting world 0 (a masked reset_data + forward over all worlds) changes neither the
    other worlds' observations nor their next steps: bit for bit."""
    a, b = (WarpCopies(TASK, [1000] * 3) for _ in range(2))
    a.set_seed(5), b.set_seed(5)
    actions = torch.linspace(-0.5, 0.5, 3).reshape(3, 1)
    last_b = None  # b's latest step
    for t in range(8):
        if t == 3:  # _reset itself: TorchRL's reset() merges its output under the mask
            out = a._reset(TensorDict({"_reset": torch.tensor([[True], [False], [False]])}, [3]))
            assert torch.equal(out["observation"][1:], last_b["observation"][1:])
            assert not torch.equal(out["observation"][0], last_b["observation"][0])
            assert out["step_count"].flatten().tolist() == [0, 3, 3]
        ta = a.step(TensorDict({"action": actions}, [3]))["next"]
        last_b = b.step(TensorDict({"action": actions}, [3]))["next"]
        for key in ("observation", "reward", "terminated"):
            assert torch.equal(ta[key][1:], last_b[key][1:]), (t, key)


def test_starts_are_the_tasks_distribution_and_seeded():
    env = WarpCopies(TASK, [1000] * 256)
    env.set_seed(0)
    qpos, qvel = env._qpos.clone(), env._qvel.clone()
    assert qpos.abs().max() <= 0.1 and qpos.abs().max() > 0.09  # uniform in +-0.1
    assert qvel.std().item() == pytest.approx(0.1, rel=0.1)  # normal, std 0.1
    env.set_seed(0)
    assert torch.equal(env._qpos, qpos)
    env.set_seed(1)
    assert not torch.equal(env._qpos, qpos)
    wide = WarpCopies(TASK, [1000] * 256, reset_noise_scale=0.2)
    wide.set_seed(0)
    assert wide._qpos.abs().max() > 0.15


def test_specs_limits_and_scaling_match_the_gymnasium_training_env(ci_config):
    cfg = config.validate(ci_config)
    stats = observation_stats(cfg["env"], 100, seed=0)
    kwargs = dict(num_envs=4, obs_stats=stats, reward_scale=0.1, episode_steps=[5, 1000])
    env = make_training_env({**cfg["env"], "backend": "mujoco-warp"}, 0, **kwargs)
    assert isinstance(env, WarpCopies)
    check_env_specs(env)
    ref = make_training_env(cfg["env"], 0, **kwargs)
    for key in ("observation_spec", "action_spec", "reward_spec", "done_spec"):
        assert getattr(env, key) == getattr(ref, key), key
    rollout = env.rollout(5, break_when_any_done=False)
    assert rollout["next", "truncated"][:, -1].flatten().tolist() == [True, False, True, False]
    assert rollout["next", "reward"].max() <= 1.0  # 10 per step, scaled by 0.1
    obs = env.raw_observation()
    expected = (obs - torch.tensor(stats["loc"])) / torch.tensor(stats["scale"])
    torch.testing.assert_close(rollout["next", "observation"][:, -1], expected.float())


def test_a_config_with_the_warp_backend_trains_and_evaluates_on_gymnasium(ci_config, tmp_path):
    torch.set_num_threads(1)
    ci_config.setdefault("env", {})["backend"] = "mujoco-warp"
    ci_config["env"]["num_envs"] = 32  # the CPU steps all worlds in about the time of one
    ci_config["ppo"].update(frames_per_batch=256, total_frames=512, eval_interval_frames=256)
    cfg = config.validate(ci_config)
    stats = observation_stats(cfg["env"], 100, seed=0)
    a = train(cfg, 0, stats, tmp_path / "a")
    b = train(cfg, 0, stats, tmp_path / "b")
    metrics = pd.DataFrame(a["state"]["metrics"]).drop(columns=list(TIMING_COLUMNS))
    assert len(metrics) == 2 and metrics["train_reward_mean"].gt(0).all()
    pd.testing.assert_frame_equal(
        metrics, pd.DataFrame(b["state"]["metrics"]).drop(columns=list(TIMING_COLUMNS))
    )
    assert a["state"]["eval"], "evaluated (on gymnasium's MuJoCo)"


def test_warp_backend_on_another_task_is_a_clear_config_error(ci_config):
    ci_config.setdefault("env", {}).update(backend="mujoco-warp", id="InvertedPendulum-v5")
    with pytest.raises(config.ConfigError, match=r"env.backend.*InvertedDoublePendulum-v5"):
        config.validate(ci_config)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_worlds_step_as_the_cpu_ones():
    """WarpCopies on CUDA (its frame_skip physics steps one captured CUDA graph from the
    second step on) against WarpCopies on the CPU: 64 worlds from the same states under the
    same actions for 5 steps, the same float32 physics up to the devices' rounding."""
    n = 64
    qpos, qvel = (torch.from_numpy(a) for a in _states(n, seed=4))
    actions = torch.rand(5, n, 1, generator=torch.Generator().manual_seed(5)) * 0.2 - 0.1
    out = {}
    for device in ("cpu", "cuda"):
        env = WarpCopies(TASK, [1000] * n, device=device)
        env.set_state(qpos.to(device), qvel.to(device))
        out[device] = [env.advance(a.to(device)).cpu() for a in actions]
    for t, (cpu, gpu) in enumerate(zip(out["cpu"], out["cuda"], strict=True)):
        for key in ("observation", "reward"):
            torch.testing.assert_close(gpu[key], cpu[key], atol=1e-4, rtol=1e-4, msg=f"{key} {t}")
        assert torch.equal(gpu["terminated"], cpu["terminated"]), t
