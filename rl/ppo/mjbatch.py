"""env.backend mujoco-batch: the training copies stepped together in C by MuJoCo's own
`mujoco.batch.Batch`, no Python per copy per step.

`BatchCopies` is `TrainingCopies` with its physics swapped: one persistent MjData per copy
(what gymnasium keeps per env), `step(nstep=frame_skip)` on `threads` threads, and the
task's observation, reward and termination computed vectorised from the bound fields that
gymnasium reads after its `mj_step`s. The numbers are gymnasium's bit for bit (tests/unit/
test_mjbatch_env.py): the same MuJoCo calls on the same states, the same numpy functions,
and squares through libm's `pow` as numpy's float64 scalars compute `x**2` (an array's
`x**2` is `x*x`, which differs in the last bit now and then). Each copy keeps its own start
generator, seeded as gymnasium seeds an env, and draws its starts in gymnasium's order.
"""

from __future__ import annotations

import math

import gymnasium
import mujoco
import numpy as np
import torch
from gymnasium.utils import seeding
from mujoco.batch import Batch

from rl.ppo.copies import Copies

_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


def _squares(values: np.ndarray) -> np.ndarray:
    """values**2 element by element as a numpy float64 scalar computes it (libm's pow)."""
    return np.array([math.pow(v, 2) for v in values.tolist()])


class _InvertedDoublePendulum:
    """InvertedDoublePendulum-v5's observation, reward, termination and starts."""

    fields = ("qpos", "qvel", "site_xpos", "qfrc_constraint")

    def __init__(self, task):
        self.healthy_reward = task._healthy_reward

    @staticmethod
    def observe(f: dict, ids) -> np.ndarray:
        angles = np.ascontiguousarray(f["qpos"][ids, 1:])
        return np.concatenate(
            [
                f["qpos"][ids, :1],
                np.sin(angles),
                np.cos(angles),
                np.clip(f["qvel"][ids], -10, 10),
                np.clip(f["qfrc_constraint"][ids], -10, 10)[:, :1],
            ],
            axis=1,
        )

    def reward(self, f: dict, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = f["site_xpos"][:, 0, 0], f["site_xpos"][:, 0, 2]
        terminated = y <= 1
        qvel = f["qvel"]
        dist_penalty = 0.01 * _squares(x) + _squares(y - 2)
        vel_penalty = 1e-3 * _squares(qvel[:, 1]) + 5e-3 * _squares(qvel[:, 2])
        alive_bonus = self.healthy_reward * (~terminated)
        return alive_bonus - dist_penalty - vel_penalty, terminated

    @staticmethod
    def start(task, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
        qpos = task.init_qpos + rng.uniform(low=-noise, high=noise, size=task.model.nq)
        qvel = task.init_qvel + rng.standard_normal(task.model.nv) * noise
        return qpos, qvel


class _InvertedPendulum:
    """InvertedPendulum-v5's observation, reward, termination and starts."""

    fields = ("qpos", "qvel")

    def __init__(self, task):
        pass

    @staticmethod
    def observe(f: dict, ids) -> np.ndarray:
        return np.concatenate([f["qpos"][ids], f["qvel"][ids]], axis=1)

    @staticmethod
    def reward(f: dict, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        terminated = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
        return (~terminated).astype(np.float64), terminated

    @staticmethod
    def start(task, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
        qpos = task.init_qpos + rng.uniform(size=task.model.nq, low=-noise, high=noise)
        qvel = task.init_qvel + rng.uniform(size=task.model.nv, low=-noise, high=noise)
        return qpos, qvel


TASKS = {
    "InvertedDoublePendulum-v5": _InvertedDoublePendulum,
    "InvertedPendulum-v5": _InvertedPendulum,
}


class BatchCopies(Copies):
    """`len(limits)` copies of a MuJoCo task in one `mujoco.batch.Batch` (see `Copies` for
    the pipeline inside and the module for why the numbers are gymnasium's). `threads`:
    the batch's threads, the caller's included. Its saved state is `TrainingCopies`'s:
    each copy's integration state row and its generator."""

    def __init__(
        self,
        env_id: str,
        limits: list[int],
        *,
        obs_stats: dict | None = None,
        reward_scale: float = 1.0,
        reset_noise_scale: float | None = None,
        threads: int = 1,
        device: str | torch.device = "cpu",
    ):
        if env_id not in TASKS:
            raise ValueError(
                f"env.backend mujoco-batch computes the observation and reward of "
                f"{', '.join(TASKS)} only, not of {env_id}. Set env.backend: gymnasium."
            )
        kwargs = {} if reset_noise_scale is None else {"reset_noise_scale": reset_noise_scale}
        # one gymnasium env: the task's compiled model, its initial state and constants
        self._task = gymnasium.make(env_id, **kwargs).unwrapped
        self._rules = TASKS[env_id](self._task)
        space = self._task.action_space
        super().__init__(
            limits,
            self._task.observation_space.shape[0],
            space.low,
            space.high,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            device=device,
        )
        n = len(limits)
        self._batch = Batch(self._task.model, n, nthread=threads, persistent=True)
        self._fields = {name: self._batch.bind(name) for name in self._rules.fields}
        self._ctrl = self._batch.bind("ctrl")
        self._scratch = mujoco.MjData(self._task.model)
        self._rngs = [None] * n

    def _seed_copies(self, seed: int | None) -> None:
        for i in range(len(self._rngs)):
            self._rngs[i], _ = seeding.np_random(None if seed is None else seed + i)
        self._reset_copies(np.arange(len(self._rngs)))

    def _reset_copies(self, ids: np.ndarray) -> None:
        # gymnasium's reset (mj_resetData, the start drawn and set, mj_forward) on one
        # scratch MjData, whose state then becomes the copy's: a few copies end per step,
        # and a batch call for them costs more than their physics
        model, data, noise = self._task.model, self._scratch, self._task._reset_noise_scale
        fields = {name: getattr(data, name)[None] for name in self._rules.fields}
        for i in ids:
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = self._rules.start(self._task, self._rngs[i], noise)
            mujoco.mj_forward(model, data)
            mujoco.mj_getState(model, data, self._batch.state[i], _INTEGRATION)
            self._obs[i] = self._rules.observe(fields, slice(None))[0]

    def _step_copies(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # float32 actions widen exactly to MuJoCo's float64 controls, as in gymnasium
        self._ctrl[:] = action
        self._batch.step(nstep=self._task.frame_skip)
        self._obs[:] = self._rules.observe(self._fields, slice(None))
        reward, terminated = self._rules.reward(self._fields, self._obs)
        return reward.reshape(-1, 1), terminated.reshape(-1, 1)

    def _physics(self) -> tuple[np.ndarray, list]:
        return self._batch.state.copy(), [rng.bit_generator.state for rng in self._rngs]

    def _set_physics(self, physics: np.ndarray, rngs: list) -> None:
        self._batch.state[:] = physics
        for rng, state in zip(self._rngs, rngs, strict=True):
            rng.bit_generator.state = state

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._task.close()
        super().close(raise_if_closed=raise_if_closed)
