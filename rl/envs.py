"""Environment construction: gymnasium MuJoCo tasks wrapped for TorchRL."""

from __future__ import annotations

from functools import partial

import gymnasium
import torch
from gymnasium.vector import AutoresetMode
from torchrl.envs import (
    Compose,
    DoubleToFloat,
    EnvBase,
    ObservationNorm,
    RewardScaling,
    StepCounter,
    TransformedEnv,
)
from torchrl.envs.libs.gym import GymWrapper

from rl.config import check_env_id


def make_env(
    env_cfg: dict,
    seed: int,
    *,
    num_envs: int | None = None,
    obs_stats: dict | None = None,
    reward_scale: float | None = None,
    device: str | torch.device = "cpu",
    render_size: tuple[int, int] | None = None,
    camera: dict | None = None,
    episode_steps: list[int] | None = None,
    reset_noise_scale: float | None = None,
) -> tuple[EnvBase, ObservationNorm | None]:
    """A batched env of `num_envs` synchronous gymnasium copies (same-step autoreset).

    Returns the env and its ObservationNorm (None without stats); keep that reference:
    TorchRL inserts its own vector-env transform first, so indexing would be fragile.
    `render_size` (width, height): the copies render `rgb_array` frames of that size
    (`render_frame`) from `camera` (gymnasium's default_camera_config; None: the env's);
    rendering reads the simulation, it never steps it or draws random numbers.
    `episode_steps`: the copies' time limits, cycled over them (training only; None:
    `env_cfg`'s max_episode_steps for all). `reset_noise_scale`: the MuJoCo task's start-
    state noise (training only; None: the task's own).
    """
    check_env_id(env_cfg["id"])
    n = num_envs or env_cfg["num_envs"]
    kwargs = {}  # gymnasium.make's, for every copy
    if render_size is not None:
        kwargs = {"render_mode": "rgb_array", "width": render_size[0], "height": render_size[1]}
        if camera:
            kwargs["default_camera_config"] = camera
    if reset_noise_scale is not None:
        kwargs["reset_noise_scale"] = reset_noise_scale
    cycle = episode_steps or [env_cfg["max_episode_steps"]]
    limits = [cycle[i % len(cycle)] for i in range(n)]
    try:
        venv = _vector_env(env_cfg["id"], limits, kwargs)
    except TypeError as exc:
        if reset_noise_scale is None:
            raise
        raise ValueError(
            f"Invalid config key 'ppo.train_reset_noise_scale': {env_cfg['id']} does not take "
            f"a reset_noise_scale ({exc}). Set it to null for this task."
        ) from None
    base = GymWrapper(venv, device=device)
    norm = None
    transforms = []
    if obs_stats is not None:
        norm = ObservationNorm(
            loc=torch.as_tensor(obs_stats["loc"], dtype=torch.float64, device=device),
            scale=torch.as_tensor(obs_stats["scale"], dtype=torch.float64, device=device),
            in_keys=["observation"],
            standard_normal=True,
        )
        transforms.append(norm)
    transforms += [DoubleToFloat(in_keys=["observation"]), StepCounter()]
    if reward_scale is not None and reward_scale != 1.0:
        transforms.append(RewardScaling(loc=0.0, scale=reward_scale))
    env = TransformedEnv(base, Compose(*transforms))
    env.set_seed(seed)
    return env, norm


def _vector_env(env_id: str, limits: list[int], kwargs: dict) -> gymnasium.vector.VectorEnv:
    """Synchronous copies of `env_id` (same-step autoreset), copy i time-limited at
    limits[i]: gymnasium's make_vec when the limits agree, else what it builds, by hand."""
    if len(set(limits)) == 1:
        return gymnasium.make_vec(
            env_id,
            num_envs=len(limits),
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            max_episode_steps=limits[0],
            **kwargs,
        )
    return gymnasium.vector.SyncVectorEnv(
        [partial(gymnasium.make, env_id, max_episode_steps=m, **kwargs) for m in limits],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


def render_frame(env: EnvBase, index: int = 0):
    """The current RGB frame (height, width, 3; uint8) of copy `index` of a `make_env` env
    made with `render_size`."""
    return env.base_env._env.render()[index]


def observation_stats(env_cfg: dict, steps: int, seed: int) -> dict:
    """Mean/std of observations under a uniformly random policy, over `steps` env steps."""
    env, _ = make_env(env_cfg, seed, num_envs=1)
    torch.manual_seed(seed)
    norm = ObservationNorm(in_keys=["observation"], standard_normal=True)
    env.append_transform(norm)
    norm.init_stats(num_iter=steps, reduce_dim=(0, 1), cat_dim=1)
    env.close()
    return {
        "env_id": env_cfg["id"],
        "loc": norm.loc.flatten().tolist(),
        "scale": norm.scale.flatten().tolist(),
        "count": steps,
        "seed": seed,
    }
