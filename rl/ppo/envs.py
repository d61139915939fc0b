"""Environment construction: gymnasium MuJoCo tasks wrapped for TorchRL.

`make_env` (TorchRL's GymWrapper and transforms: the reference pipeline, and the
observation statistics) and `TrainingCopies` (the same task stepped with less per-step
overhead, see its docstring): the training env (`make_training_env`) and the
evaluation env (`make_eval_env`, whose episodes are make_env's).
"""

from __future__ import annotations

import json

import gymnasium
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict
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

from rl.ppo.specs import cleared_flags, set_task_specs


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


class TrainingCopies(EnvBase):
    """`len(limits)` copies of a gymnasium MuJoCo task as one batched TorchRL env (batch
    size [n]) with the training env's whole pipeline inside: observations normalised by
    fixed statistics and cast to float32, rewards scaled, a per-copy step count, copy i
    truncated at limits[i] steps (a time limit, as gymnasium's TimeLimit: GAE bootstraps
    there), copies reset where TorchRL's `_reset` mask says (after the step that ended
    them: "next" holds the true last observation).

    Why not GymWrapper(make_vec) with ObservationNorm, DoubleToFloat, StepCounter and
    RewardScaling (what `make_env` builds): there every step and reset passes through
    TorchRL's generic transform and vector-env machinery, whose overhead outweighs the
    MuJoCo step itself; here the same work is plain numpy on the copies' arrays, so
    collection costs less (docs/benchmarks.md has the measurements). The numbers are the
    same computation: (obs - loc) / scale in float64, then float32.
    Seeding as GymWrapper over a gymnasium vector env: `set_seed(s)` resets copy i with
    seed s + i; later resets draw from the copies' own generators. Each copy's first
    episode is `make_env`'s step for step (tests/unit/test_ppo.py checks it); later starts are
    drawn in another order (there gymnasium autoresets within the step, then TorchRL
    resets again). With `same_step_autoreset` a copy also draws a start inside the step
    that ends its episode, as gymnasium's vector env does, so every episode is make_env's
    (the evaluation's env: the same episodes, more cheaply). `render(i)`: copy i's
    frame, when `make_kwargs` asks for rgb_array rendering.
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
        n = len(limits)
        super().__init__(batch_size=torch.Size([n]), device=device)
        self._same_step_autoreset = same_step_autoreset
        self._copies = [gymnasium.make(env_id, **(make_kwargs or {})).unwrapped for _ in limits]
        space = self._copies[0].action_space
        # actions reach the task in its own dtype, as gymnasium's vector env passes them:
        # MuJoCo widens float32 controls exactly, but Pendulum-v1 computes with them
        self._action_dtype = space.dtype
        obs_dim = self._copies[0].observation_space.shape[0]
        self._limits = np.asarray(limits, dtype=np.int64).reshape(n, 1)
        if obs_stats is None:
            self._loc, self._scale = np.zeros(obs_dim), np.ones(obs_dim)
        else:
            self._loc = np.asarray(obs_stats["loc"], dtype=np.float64)
            self._scale = np.asarray(obs_stats["scale"], dtype=np.float64)
        self._reward_scale = reward_scale
        self._obs = np.zeros((n, obs_dim))
        self._count = np.zeros((n, 1), dtype=np.int64)
        set_task_specs(self, obs_dim, space.low, space.high, int(self._limits.max()))

    def _set_seed(self, seed: int | None) -> None:
        # as GymWrapper does with a vector env: reset now, copy i seeded with seed + i
        for i, copy in enumerate(self._copies):
            self._obs[i], _ = copy.reset(seed=None if seed is None else seed + i)
        self._count[:] = 0

    def _tensor(self, array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(array, dtype=dtype).to(self.device)

    def _observe(self, extra: dict) -> TensorDict:
        obs = (self._obs - self._loc) / self._scale
        return TensorDict(
            {
                "observation": self._tensor(obs, torch.float32),
                "step_count": self._tensor(self._count.copy(), torch.int64),
                **extra,
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def current(self) -> TensorDict:
        """Every copy's observation and step count with cleared flags, as a reset returns
        them, without resetting: what the policy acts on next."""
        return self._observe(cleared_flags(self))

    def _reset(self, tensordict: TensorDict | None, **kwargs) -> TensorDict:
        mask = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict["_reset"].reshape(-1).cpu().numpy()
        for i, copy in enumerate(self._copies):
            if mask is None or mask[i]:
                self._obs[i], _ = copy.reset()
                self._count[i] = 0
        return self.current()

    def save_state(self) -> dict[str, torch.Tensor]:
        """What continuing the copies' episodes needs, as CPU tensors (a checkpoint holds
        them; a collector worker sends them through its pipe): each copy's simulator state
        (MuJoCo's full integration state, mj_getState: time, qpos, qvel, act, the solver's
        warm start...; a classic-control task's `state`), its start generator, and the
        observations and step counts the policy acts on next. `load_state` puts them back,
        so the copies then step on as if never stopped."""
        physics = np.stack([_physics_state(copy) for copy in self._copies])
        rngs = [copy.np_random.bit_generator.state for copy in self._copies]
        return {
            "physics": torch.from_numpy(physics),
            # PCG64's state holds 128-bit integers: kept as JSON text, not pickled objects
            "rng": torch.frombuffer(bytearray(json.dumps(rngs).encode()), dtype=torch.uint8),
            "obs": torch.from_numpy(self._obs.copy()),
            "count": torch.from_numpy(self._count.copy()),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `save_state`'s output (of copies of the same task and limits)."""
        physics = state["physics"].numpy()
        if physics.shape[0] != len(self._copies) or state["obs"].shape != self._obs.shape:
            raise ValueError(
                f"The saved environment state is for {physics.shape[0]} copies with "
                f"observations {tuple(state['obs'].shape)}, this env has {len(self._copies)} "
                f"with {self._obs.shape}: it was written under another env.num_envs or task."
            )
        rngs = json.loads(state["rng"].numpy().tobytes().decode())
        for copy, values, rng in zip(self._copies, physics, rngs, strict=True):
            _set_physics_state(copy, values)
            copy.np_random.bit_generator.state = rng
        self._obs[:] = state["obs"].numpy()
        self._count[:] = state["count"].numpy()

    def _step(self, tensordict: TensorDict) -> TensorDict:
        action = tensordict["action"].detach().cpu().numpy().astype(self._action_dtype)
        n = len(self._copies)
        reward = np.empty((n, 1))
        terminated = np.empty((n, 1), dtype=bool)
        for i, copy in enumerate(self._copies):
            self._obs[i], reward[i], terminated[i], _, _ = copy.step(action[i])
        self._count += 1
        truncated = self._count >= self._limits
        if self._same_step_autoreset:
            # as gymnasium's vector env does: a start drawn now, and dropped when TorchRL
            # resets the copy (so the starts are the draws make_env's episodes get)
            for i in np.flatnonzero(terminated | truncated):
                self._copies[i].reset()
        return self._observe(
            {
                # float32 times float32, as RewardScaling computes it
                "reward": self._tensor(
                    reward.astype(np.float32) * np.float32(self._reward_scale), torch.float32
                ),
                "done": self._tensor(terminated | truncated, torch.bool),
                "terminated": self._tensor(terminated, torch.bool),
                "truncated": self._tensor(truncated, torch.bool),
            }
        )

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
    (None: the task's own). env.backend: gymnasium (TrainingCopies) or mujoco-warp
    (rl.ppo.warp.WarpCopies, the same contract)."""
    n = num_envs or env_cfg["num_envs"]
    cycle = episode_steps or [env_cfg["max_episode_steps"]]
    limits = [cycle[(first_copy + i) % len(cycle)] for i in range(n)]
    if env_cfg.get("backend", "gymnasium") == "mujoco-warp":
        from rl.ppo.warp import WarpCopies  # optional packages, imported only when chosen

        env = WarpCopies(
            env_cfg["id"],
            limits,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            reset_noise_scale=reset_noise_scale,
            device=device,
        )
        env.set_seed(seed)
        return env
    kwargs = {} if reset_noise_scale is None else {"reset_noise_scale": reset_noise_scale}
    try:
        env = TrainingCopies(
            env_cfg["id"],
            limits,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            make_kwargs=kwargs,
            device=device,
        )
    except TypeError as exc:
        if reset_noise_scale is None:
            raise
        raise ValueError(
            f"Invalid config key 'ppo.train_reset_noise_scale': {env_cfg['id']} does not take "
            f"a reset_noise_scale ({exc}). Set it to null for this task."
        ) from None
    env.set_seed(seed)
    return env


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
