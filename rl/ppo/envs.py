"""Environment construction: gymnasium MuJoCo tasks wrapped for TorchRL.

`make_env` (TorchRL's GymWrapper and transforms: the reference pipeline, and the
observation statistics) and `TrainingCopies` (the same task stepped with less per-step
overhead, see its docstring): the training env (`make_training_env`) and the
evaluation env (`make_eval_env`, whose episodes are make_env's).
"""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.vector import AutoresetMode
from torchrl.envs import (
    Compose,
    DoubleToFloat,
    DTypeCastTransform,
    EnvBase,
    ObservationNorm,
    RewardScaling,
    StepCounter,
    TransformedEnv,
)
from torchrl.envs.libs.gym import GymWrapper

from rl.ppo.copies import Copies


def make_env(
    env_cfg: dict,
    seed: int,
    *,
    num_envs: int | None = None,
    obs_stats: dict | None = None,
    reward_scale: float | None = None,
    device: str | torch.device = "cpu",
) -> tuple[EnvBase, ObservationNorm | None]:
    """A batched env of `num_envs` synchronous gymnasium copies (same-step autoreset).

    Returns the env and its ObservationNorm (None without stats); keep that reference:
    TorchRL inserts its own vector-env transform first, so indexing would be fragile.
    Every copy runs the task itself (env.max_episode_steps, the task's start noise).
    """
    n = num_envs or env_cfg["num_envs"]
    venv = gymnasium.make_vec(
        env_cfg["id"],
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        max_episode_steps=env_cfg["max_episode_steps"],
    )
    base = GymWrapper(venv, device=device)
    norm = None
    transforms = []
    obs_dtype = base.observation_spec["observation"].dtype
    if obs_dtype != torch.float64:
        # a float32 task (Pendulum-v1): normalised in float64 and then cast to float32, as
        # TrainingCopies computes it, so both give the same bits
        transforms.append(DTypeCastTransform(obs_dtype, torch.float64, in_keys=["observation"]))
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


class TrainingCopies(Copies):
    """`len(limits)` copies of a gymnasium task stepped one by one from Python (see `Copies`
    for the pipeline inside).

    Why not GymWrapper(make_vec) with ObservationNorm, DoubleToFloat, StepCounter and
    RewardScaling (what `make_env` builds): there every step and reset passes through
    TorchRL's generic transform and vector-env machinery, whose overhead outweighs the
    MuJoCo step itself; here the same work is plain numpy on the copies' arrays, so
    collection costs less (docs/benchmarks.md has the measurements).
    Each copy's first episode is `make_env`'s step for step (tests/unit/test_ppo.py checks
    it); later starts are drawn in another order (there gymnasium autoresets within the
    step, then TorchRL resets again). With `same_step_autoreset` a copy also draws a start
    inside the step that ends its episode, as gymnasium's vector env does, so every episode
    is make_env's (the evaluation's env: the same episodes, more cheaply). `render(i)`:
    copy i's frame, when `make_kwargs` asks for rgb_array rendering.
    """

    def __init__(
        self,
        env_id: str,
        limits: list[int],
        *,
        obs_stats: dict | None = None,
        reward_scale: float = 1.0,
        make_kwargs: dict | None = None,
        device: str | torch.device = "cpu",
        same_step_autoreset: bool = False,
    ):
        copies = [gymnasium.make(env_id, **(make_kwargs or {})).unwrapped for _ in limits]
        space = copies[0].action_space
        obs_dim = copies[0].observation_space.shape[0]
        super().__init__(
            limits,
            obs_dim,
            space.low,
            space.high,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            device=device,
        )
        self._copies = copies
        self._same_step_autoreset = same_step_autoreset
        # actions reach the task in its own dtype, as gymnasium's vector env passes them:
        # MuJoCo widens float32 controls exactly, but Pendulum-v1 computes with them
        self._action_dtype = space.dtype

    def _seed_copies(self, seed: int | None) -> None:
        for i, copy in enumerate(self._copies):
            self._obs[i], _ = copy.reset(seed=None if seed is None else seed + i)

    def _reset_copies(self, ids: np.ndarray) -> None:
        for i in ids:
            self._obs[i], _ = self._copies[i].reset()

    def _step_copies(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action = action.astype(self._action_dtype)
        n = len(self._copies)
        reward = np.empty((n, 1))
        terminated = np.empty((n, 1), dtype=bool)
        for i, copy in enumerate(self._copies):
            self._obs[i], reward[i], terminated[i], _, _ = copy.step(action[i])
        return reward, terminated

    def _ended(self, ids: np.ndarray) -> None:
        if self._same_step_autoreset:
            # as gymnasium's vector env does: a start drawn now, and dropped when TorchRL
            # resets the copy (so the starts are the draws make_env's episodes get)
            for i in ids:
                self._copies[i].reset()

    def _physics(self) -> tuple[np.ndarray, list]:
        physics = np.stack([_physics_state(copy) for copy in self._copies])
        return physics, [copy.np_random.bit_generator.state for copy in self._copies]

    def _set_physics(self, physics: np.ndarray, rngs: list) -> None:
        for copy, values, rng in zip(self._copies, physics, rngs, strict=True):
            _set_physics_state(copy, values)
            copy.np_random.bit_generator.state = rng

    def render(self, index: int = 0):
        """Copy `index`'s current RGB frame (height, width, 3; uint8); it reads the
        simulation, it never steps it or draws random numbers."""
        return self._copies[index].render()

    def close(self, *, raise_if_closed: bool = True) -> None:
        for copy in self._copies:
            copy.close()
        super().close(raise_if_closed=raise_if_closed)


_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


def _physics_state(copy) -> np.ndarray:
    if isinstance(copy, MujocoEnv):
        out = np.empty(mujoco.mj_stateSize(copy.model, _INTEGRATION))
        mujoco.mj_getState(copy.model, copy.data, out, _INTEGRATION)
        return out
    if isinstance(getattr(copy, "state", None), np.ndarray):  # classic control
        return np.asarray(copy.state, dtype=np.float64)
    raise TypeError(
        f"Cannot save the state of {type(copy).__name__} mid-episode: it is neither a "
        f"MuJoCo task nor a classic-control task with a `state` array."
    )


def _set_physics_state(copy, values: np.ndarray) -> None:
    if isinstance(copy, MujocoEnv):
        mujoco.mj_setState(copy.model, copy.data, np.ascontiguousarray(values), _INTEGRATION)
    else:
        copy.state = values.astype(copy.state.dtype)


def make_training_env(
    env_cfg: dict,
    seed: int,
    *,
    num_envs: int | None = None,
    obs_stats: dict | None = None,
    reward_scale: float = 1.0,
    device: str | torch.device = "cpu",
    episode_steps: list[int] | None = None,
    reset_noise_scale: float | None = None,
    first_copy: int = 0,
) -> EnvBase:
    """The training loop's env of `num_envs` copies (None: env.num_envs; see
    TrainingCopies); episode limits cycled from `episode_steps` (None: the task's own
    env.max_episode_steps), copy i taking the limit of copy first_copy + i of the cycle
    (a collector worker's share of the copies), MuJoCo start noise `reset_noise_scale`
    (None: the task's own). env.backend: gymnasium (TrainingCopies), mujoco-batch
    (rl.ppo.mjbatch.BatchCopies) or mujoco-warp (rl.ppo.warp.WarpCopies, the same
    contract)."""
    n = num_envs or env_cfg["num_envs"]
    cycle = episode_steps or [env_cfg["max_episode_steps"]]
    limits = [cycle[(first_copy + i) % len(cycle)] for i in range(n)]
    common = {"obs_stats": obs_stats, "reward_scale": reward_scale, "device": device}
    backend = env_cfg.get("backend", "gymnasium")
    if backend == "mujoco-warp":
        from rl.ppo.warp import WarpCopies  # optional packages, imported only when chosen

        env = WarpCopies(env_cfg["id"], limits, reset_noise_scale=reset_noise_scale, **common)
    elif backend == "mujoco-batch":
        from rl.ppo.mjbatch import BatchCopies

        env = BatchCopies(
            env_cfg["id"],
            limits,
            reset_noise_scale=reset_noise_scale,
            threads=env_cfg["threads"],
            **common,
        )
    else:
        kwargs = {} if reset_noise_scale is None else {"reset_noise_scale": reset_noise_scale}
        try:
            env = TrainingCopies(env_cfg["id"], limits, make_kwargs=kwargs, **common)
        except TypeError as exc:
            if reset_noise_scale is None:
                raise
            raise ValueError(
                f"Invalid config key 'ppo.train_reset_noise_scale': {env_cfg['id']} does not "
                f"take a reset_noise_scale ({exc}). Set it to null for this task."
            ) from None
    env.set_seed(seed)
    return env


def make_run_env(cfg: dict, seed: int, obs_stats: dict, **kwargs) -> EnvBase:
    """The training env a run's config asks for: `make_training_env` with its env section
    and its ppo section's reward scale, episode limits and start noise (`kwargs`: device,
    num_envs, first_copy)."""
    ppo = cfg["ppo"]
    return make_training_env(
        cfg["env"],
        seed,
        obs_stats=obs_stats,
        reward_scale=ppo["reward_scale"],
        episode_steps=ppo["train_episode_steps"],
        reset_noise_scale=ppo["train_reset_noise_scale"],
        **kwargs,
    )


def make_eval_env(
    env_cfg: dict,
    seed: int,
    *,
    obs_stats: dict | None = None,
    device: str | torch.device = "cpu",
    render_size: tuple[int, int] | None = None,
    camera: dict | None = None,
) -> TrainingCopies:
    """The evaluation env: one copy of the task itself (env.max_episode_steps, the task's
    start noise, raw rewards) whose episodes are make_env's, episode for episode
    (same-step autoreset; tests/unit/test_ppo.py checks it), at less cost (docs/benchmarks.md).
    `render_size` (width, height): `env.render()` gives rgb_array frames of that size from
    `camera` (gymnasium's default_camera_config; None: the env's)."""
    kwargs = {}
    if render_size is not None:
        kwargs = {"render_mode": "rgb_array", "width": render_size[0], "height": render_size[1]}
        if camera:
            kwargs["default_camera_config"] = camera
    env = TrainingCopies(
        env_cfg["id"],
        [env_cfg["max_episode_steps"]],
        obs_stats=obs_stats,
        make_kwargs=kwargs,
        device=device,
        same_step_autoreset=True,
    )
    env.set_seed(seed)
    return env


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
