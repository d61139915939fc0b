"""GPU-resident physics: InvertedDoublePendulum-v5 stepped by mujoco-warp, many worlds at once.

`env.backend: mujoco-warp` trains on `WarpCopies` instead of `TrainingCopies`. The model is
gymnasium's own (the MjModel a `gymnasium.make` of the task loads), and so are the task's
constants (frame skip, healthy reward, start noise); the observation, reward and
termination are gymnasium's v5 formulas, computed in torch on the simulator's arrays, which
torch reads and writes in place (`warp.to_torch` views: no copies, no host round trip).
On CUDA the `frame_skip` physics steps of an env step are one captured CUDA graph.

Numbers: MuJoCo Warp computes in float32 (gymnasium's MuJoCo in float64), so a step from
the same state and action agrees to float32 rounding, and trajectories drift apart as
chaotic ones do (tests/unit/test_warp_env.py states the tolerances). Starts are drawn from the
task's distribution by a torch generator, not gymnasium's: same distribution, other draws.
Evaluation (in training and at the end) always runs gymnasium's MuJoCo.
"""

from __future__ import annotations

import logging

import gymnasium
import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase

from rl.ppo.specs import cleared_flags, set_task_specs

log = logging.getLogger("rl")


def _import_warp():
    try:
        import warp as wp

        wp.config.log_level = 30  # no line per kernel module loaded
        import mujoco_warp as mjw
    except ImportError as exc:
        raise ImportError(
            f"env.backend: mujoco-warp needs the optional packages mujoco-warp and warp-lang "
            f"({exc}). Install them with `pip install -e '.[warp]'` (make install does), or "
            f"set env.backend: gymnasium."
        ) from None
    return wp, mjw


# mujoco-warp Data fields that, with the model, determine the next step (the integration
# state; this model has no actuator activations or mocap bodies)
_INTEGRATION = ("time", "qpos", "qvel", "qacc_warmstart")


class WarpCopies(EnvBase):
    """`len(limits)` worlds of InvertedDoublePendulum-v5 in mujoco-warp as one batched TorchRL
    env (batch [n]) on `device` (cpu, or a cuda device: warp runs on the same one). The same
    contract as `rl.ppo.envs.TrainingCopies`: normalised float32 observations, scaled rewards, a
    per-world step count, world i truncated at limits[i] steps, worlds reset where TorchRL's
    `_reset` mask says; `set_seed(s)` seeds the start-state generator and resets every world.
    `reset_noise_scale` None: the task's own (0.1)."""

    def __init__(
        self,
        env_id: str,
        limits: list[int],
        *,
        obs_stats: dict | None = None,
        reward_scale: float = 1.0,
        reset_noise_scale: float | None = None,
        device: str | torch.device = "cpu",
    ):
        wp, mjw = _import_warp()
        if torch.device(device).type == "cpu":
            log.warning(
                "env.backend: mujoco-warp on the CPU: correct but several times slower than "
                "the gymnasium backend there (docs/benchmarks.md); it is meant for a GPU "
                "(device: cuda or auto). The first run compiles its kernels once (cached in "
                "~/.cache/warp)."
            )
        self._wp, self._mjw = wp, mjw
        n = len(limits)
        super().__init__(batch_size=torch.Size([n]), device=device)
        kwargs = {} if reset_noise_scale is None else {"reset_noise_scale": reset_noise_scale}
        task = gymnasium.make(env_id, **kwargs).unwrapped
        self._frame_skip = task.frame_skip
        self._healthy_reward = float(task._healthy_reward)
        self._noise = float(task._reset_noise_scale)
        dev = self.device
        self._init_qpos = torch.as_tensor(task.init_qpos, dtype=torch.float32, device=dev)
        self._init_qvel = torch.as_tensor(task.init_qvel, dtype=torch.float32, device=dev)
        obs_dim = task.observation_space.shape[0]
        set_task_specs(self, obs_dim, task.action_space.low, task.action_space.high, max(limits))

        self._wdevice = wp.get_device("cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}")
        # torch and warp work on one CUDA stream, so their kernels run in order
        self._stream = wp.stream_from_torch(dev) if dev.type == "cuda" else None
        with self._scope():
            self._model = mjw.put_model(task.model)
            self._data = mjw.make_data(task.model, nworld=n)
        task.close()
        d = self._data
        # views of the simulator's arrays (shared memory)
        self._qpos, self._qvel, self._ctrl = (wp.to_torch(a) for a in (d.qpos, d.qvel, d.ctrl))
        self._site_xpos = wp.to_torch(d.site_xpos)  # (n, nsite, 3)
        self._qfrc_constraint = wp.to_torch(d.qfrc_constraint)
        self._graph = None
        self._steps_run = 0

        self._limits = torch.as_tensor(limits, dtype=torch.int64, device=dev).reshape(n, 1)
        if obs_stats is None:
            loc, scale = torch.zeros(obs_dim), torch.ones(obs_dim)
        else:
            loc, scale = torch.as_tensor(obs_stats["loc"]), torch.as_tensor(obs_stats["scale"])
        self._loc = loc.to(dev, torch.float32)
        self._scale = scale.to(dev, torch.float32)
        self._reward_scale = float(reward_scale)
        self._obs = torch.zeros((n, obs_dim), device=dev)
        self._count = torch.zeros((n, 1), dtype=torch.int64, device=dev)
        self._generator = torch.Generator(device=dev)

    # -- the simulator
    def _scope(self):
        if self._stream is not None:
            return self._wp.ScopedStream(self._stream)
        return self._wp.ScopedDevice(self._wdevice)

    def _substeps(self) -> None:
        for _ in range(self._frame_skip):
            self._mjw.step(self._model, self._data)

    def _simulate(self) -> None:
        """frame_skip physics steps of every world: on CUDA a graph captured on the second
        call (the first loads the kernels) and replayed after."""
        wp = self._wp
        with self._scope():
            if self._stream is None or self._steps_run == 0:
                self._substeps()
            else:
                if self._graph is None:
                    with wp.ScopedCapture(stream=self._stream) as capture:
                        self._substeps()
                    self._graph = capture.graph
                wp.capture_launch(self._graph, stream=self._stream)
        self._steps_run += 1

    def raw_observation(self) -> torch.Tensor:
        """gymnasium v5's observation of every world, float32 (n, 9): cart position, sin and
        cos of the two hinge angles, velocities clipped to +-10, the cart's constraint force
        clipped to +-10."""
        qpos = self._qpos
        return torch.cat(
            [
                qpos[:, :1],
                torch.sin(qpos[:, 1:]),
                torch.cos(qpos[:, 1:]),
                self._qvel.clamp(-10, 10),
                self._qfrc_constraint.clamp(-10, 10)[:, :1],
            ],
            dim=1,
        )

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Put every world in the state (qpos, qvel) (n, nq)/(n, nv), as gymnasium's set_state
        does: a cleared simulation state, then the derived quantities computed (forward);
        the observation buffer takes the new state's observation."""
        self._put({"qpos": qpos, "qvel": qvel})
        self._obs = self.raw_observation()

    def _put(self, fields: dict[str, torch.Tensor]) -> None:
        """A cleared simulation state, `fields` (Data field name: values) copied in, then
        the derived quantities computed (forward)."""
        d = self._data
        with self._scope():
            self._mjw.reset_data(self._model, d)
            for name, values in fields.items():
                self._wp.to_torch(getattr(d, name)).copy_(values)
            self._mjw.forward(self._model, d)

    def save_state(self) -> dict[str, torch.Tensor]:
        """What continuing the worlds' episodes needs, as CPU tensors (as
        TrainingCopies.save_state): each world's integration state (time, qpos, qvel, the
        solver's warm start), the start generator, the observations and step counts."""
        d = self._data
        return {
            **{k: self._wp.to_torch(getattr(d, k)).cpu().clone() for k in _INTEGRATION},
            "generator": self._generator.get_state(),
            "obs": self._obs.cpu().clone(),
            "count": self._count.cpu().clone(),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `save_state`'s output: the simulation cleared, the integration
        state put back and the derived quantities computed (forward), as after the step and
        restart that preceded the save."""
        if state["obs"].shape != self._obs.shape:
            raise ValueError(
                f"The saved environment state is for observations {tuple(state['obs'].shape)}, "
                f"this env has {tuple(self._obs.shape)}: it was written under another "
                f"env.num_envs or task."
            )
        self._put({k: state[k] for k in _INTEGRATION})
        self._generator.set_state(state["generator"])
        self._obs = state["obs"].to(self.device)
        self._count = state["count"].to(self.device)

    def current(self) -> TensorDict:
        """Every world's observation and step count with cleared flags, without resetting."""
        return self._observe(cleared_flags(self))

    # -- TorchRL's EnvBase
    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        self._reset(None)

    def _observe(self, extra: dict) -> TensorDict:
        return TensorDict(
            {
                "observation": (self._obs - self._loc) / self._scale,
                "step_count": self._count.clone(),
                **extra,
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDict | None, **kwargs) -> TensorDict:
        mask = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict["_reset"]
        return self.restart(mask)

    def restart(self, mask: torch.Tensor | None = None) -> TensorDict:
        """Reset the worlds where `mask` (n or (n, 1) bools; None: all) says; every world's
        observation and step count, with cleared flags: what the policy acts on next (the
        worlds not reset keep the observation of their last step). Fixed shapes, no host
        sync: the device-resident rollout (rl.ppo.resident) calls it after every step."""
        n, dev = self.batch_size[0], self.device
        if mask is None:
            mask = torch.ones(n, dtype=torch.bool, device=dev)
        mask = mask.reshape(n).to(dev, torch.bool)
        # the task's start noise: qpos uniform in +-scale, qvel normal with std scale; drawn
        # for every world (fixed shapes, no host sync), used where the mask says
        g, s = self._generator, self._noise
        qpos = self._init_qpos + (torch.rand(self._qpos.shape, generator=g, device=dev) * 2 - 1) * s
        qvel = self._init_qvel + torch.randn(self._qvel.shape, generator=g, device=dev) * s
        column = mask.unsqueeze(1)
        with self._scope():
            self._mjw.reset_data(self._model, self._data, reset=self._wp.from_torch(mask))
            self._qpos.copy_(torch.where(column, qpos, self._qpos))
            self._qvel.copy_(torch.where(column, qvel, self._qvel))
            # forward in every world: it recomputes derived quantities only (the other worlds'
            # state and next step are unchanged; tests/unit/test_warp_env.py checks it), so the
            # other worlds keep the observation of their last step from the buffer
            self._mjw.forward(self._model, self._data)
        self._obs = torch.where(column, self.raw_observation(), self._obs)
        self._count = self._count.masked_fill(column, 0)
        return self.current()

    def _step(self, tensordict: TensorDict) -> TensorDict:
        return self.advance(tensordict["action"])

    def advance(self, action: torch.Tensor) -> TensorDict:
        """One env step of every world under `action` (n, 1): the step's TensorDict
        (observation, step count, scaled reward, flags), TorchRL's "next" entry."""
        self._ctrl.copy_(action.reshape(self._ctrl.shape))
        self._simulate()
        self._obs = self.raw_observation()
        # gymnasium v5: the tip's site after the step; terminated when it is at y <= 1
        tip = self._site_xpos[:, 0]
        x, y = tip[:, 0:1], tip[:, 2:3]
        v1, v2 = self._qvel[:, 1:2], self._qvel[:, 2:3]
        terminated = y <= 1
        reward = (
            self._healthy_reward * (~terminated)
            - (0.01 * x**2 + (y - 2) ** 2)
            - (1e-3 * v1**2 + 5e-3 * v2**2)
        )
        self._count = self._count + 1
        truncated = self._count >= self._limits
        return self._observe(
            {
                "reward": reward * self._reward_scale,
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            }
        )
