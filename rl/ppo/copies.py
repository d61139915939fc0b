"""The training env's pipeline around any physics: `Copies`, the base of the gymnasium
backend's `rl.ppo.envs.TrainingCopies` and mujoco-batch's `rl.ppo.mjbatch.BatchCopies`."""

from __future__ import annotations

import json

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase

from rl.ppo.specs import cleared_flags, set_task_specs


class Copies(EnvBase):
    """n copies of a task as one batched TorchRL env (batch size [n]) with the training
    env's whole pipeline inside: observations normalised by fixed statistics and cast to
    float32, rewards scaled, a per-copy step count, copy i truncated at limits[i] steps (a
    time limit, as gymnasium's TimeLimit: GAE bootstraps there), copies reset where
    TorchRL's `_reset` mask says (after the step that ended them: "next" holds the true last
    observation). The physics is a subclass's: `TrainingCopies` (gymnasium's envs, one per
    copy) and `rl.ppo.mjbatch.BatchCopies` (MuJoCo's batch, all copies in C) fill `_obs`
    (the raw observations) through `_seed_copies`, `_reset_copies`, `_step_copies`, and
    give their state through `_physics` / `_set_physics`.

    The numbers are make_env's computation: (obs - loc) / scale in float64, then float32;
    float32 rewards times a float32 scale. Seeding as GymWrapper over a gymnasium vector
    env: `set_seed(s)` resets copy i with seed s + i; later resets draw from the copies'
    own generators.
    """

    def __init__(self, limits, obs_dim, low, high, *, obs_stats, reward_scale, device):
        n = len(limits)
        super().__init__(batch_size=torch.Size([n]), device=device)
        self._limits = np.asarray(limits, dtype=np.int64).reshape(n, 1)
        if obs_stats is None:
            self._loc, self._scale = np.zeros(obs_dim), np.ones(obs_dim)
        else:
            self._loc = np.asarray(obs_stats["loc"], dtype=np.float64)
            self._scale = np.asarray(obs_stats["scale"], dtype=np.float64)
        self._reward_scale = reward_scale
        self._obs = np.zeros((n, obs_dim))
        self._count = np.zeros((n, 1), dtype=np.int64)
        set_task_specs(self, obs_dim, low, high, int(self._limits.max()))

    def _set_seed(self, seed: int | None) -> None:
        # as GymWrapper does with a vector env: reset now, copy i seeded with seed + i
        self._seed_copies(seed)
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
        ids = np.arange(self.batch_size[0])
        if tensordict is not None and "_reset" in tensordict.keys():
            ids = np.flatnonzero(tensordict["_reset"].reshape(-1).cpu().numpy())
        if len(ids):
            self._reset_copies(ids)
            self._count[ids] = 0
        return self.current()

    def save_state(self) -> dict[str, torch.Tensor]:
        """What continuing the copies' episodes needs, as CPU tensors (a checkpoint holds
        them; a collector worker sends them through its pipe): each copy's simulator state
        (MuJoCo's full integration state, mj_getState: time, qpos, qvel, act, the solver's
        warm start...; a classic-control task's `state`), its start generator, and the
        observations and step counts the policy acts on next. `load_state` puts them back,
        so the copies then step on as if never stopped."""
        physics, rngs = self._physics()
        return {
            "physics": torch.from_numpy(physics),
            # PCG64's state holds 128-bit integers: kept as JSON text, not pickled objects
            "rng": torch.frombuffer(bytearray(json.dumps(rngs).encode()), dtype=torch.uint8),
            "obs": torch.from_numpy(self._obs.copy()),
            "count": torch.from_numpy(self._count.copy()),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `save_state`'s output (of copies of the same task and limits)."""
        physics, n = state["physics"].numpy(), self.batch_size[0]
        if physics.shape[0] != n or state["obs"].shape != self._obs.shape:
            raise ValueError(
                f"The saved environment state is for {physics.shape[0]} copies with "
                f"observations {tuple(state['obs'].shape)}, this env has {n} "
                f"with {self._obs.shape}: it was written under another env.num_envs or task."
            )
        self._set_physics(physics, json.loads(state["rng"].numpy().tobytes().decode()))
        self._obs[:] = state["obs"].numpy()
        self._count[:] = state["count"].numpy()

    def _step(self, tensordict: TensorDict) -> TensorDict:
        reward, terminated = self._step_copies(tensordict["action"].detach().cpu().numpy())
        self._count += 1
        truncated = self._count >= self._limits
        self._ended(np.flatnonzero(terminated | truncated))
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

    def _ended(self, ids: np.ndarray) -> None:
        """Called with the copies whose episode the last step ended (before their reset)."""
