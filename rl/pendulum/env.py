"""A stateless, batch-unlocked pendulum for TorchRL: the physics and cost of gymnasium's
Pendulum-v1, written from scratch as in the TorchRL pendulum tutorial.

The state (angle `th`, angular speed `thdot`) and the physical parameters travel in the
tensordict, so every batch element may have its own gravity, mass, length, time step and
limits, and any batch size works without rebuilding the environment. Angle 0 is upright.

`dynamics` is the only physics in the project: `PendulumEnv._step` calls it, and so does
`batched_rollout`, the environment's own batched step loop on plain tensors that training
differentiates through (no tensordict per step; tests check it equals `env.rollout`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import CatTensors, EnvBase, Transform, TransformedEnv, UnsqueezeTransform
from torchrl.envs.transforms.transforms import _apply_to_composite

# gymnasium Pendulum-v1's constants; the config's `pendulum.physics` overrides them.
DEFAULT_PHYSICS = {"g": 10.0, "m": 1.0, "l": 1.0, "dt": 0.05, "max_torque": 2.0, "max_speed": 8.0}
PARAM_KEYS = tuple(DEFAULT_PHYSICS)
# The policy's input, in gymnasium's order: [cos(th), sin(th), thdot].
OBSERVATION_KEYS = ("cos", "sin", "thdot")


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap an angle into [-pi, pi)."""
    return ((x + torch.pi) % (2 * torch.pi)) - torch.pi


def dynamics(
    th: torch.Tensor, thdot: torch.Tensor, u: torch.Tensor, params: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Pendulum-v1 step on any batch shape: (th, thdot, torque) -> (th', thdot', reward).

    `u` has the batch shape of `th` (no trailing action dimension). The reward is the
    negative cost of the state and clamped torque *before* the step, as in gymnasium; the
    angle is not wrapped (gymnasium keeps it unwrapped too); the speed is clamped.
    """
    max_torque, max_speed = params["max_torque"], params["max_speed"]
    g, m, length, dt = params["g"], params["m"], params["l"], params["dt"]
    u = u.clamp(-max_torque, max_torque)
    cost = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
    new_thdot = thdot + (3 * g / (2 * length) * th.sin() + 3.0 / (m * length**2) * u) * dt
    new_thdot = new_thdot.clamp(-max_speed, max_speed)
    new_th = th + new_thdot * dt
    return new_th, new_thdot, -cost


def make_params(
    physics: Mapping[str, float] | None = None,
    batch_size: Sequence[int] = (),
    device: str | torch.device = "cpu",
) -> TensorDict:
    """A tensordict {'params': {g, m, l, dt, max_torque, max_speed}} of `batch_size`."""
    values = {**DEFAULT_PHYSICS, **(physics or {})}
    unknown = set(values) - set(PARAM_KEYS)
    if unknown:
        raise ValueError(f"Unknown pendulum parameters {sorted(unknown)}; known: {PARAM_KEYS}.")
    params = TensorDict(
        {k: torch.tensor(float(values[k]), device=device) for k in PARAM_KEYS}, [], device=device
    )
    td = TensorDict({"params": params}, [], device=device)
    if tuple(batch_size):
        td = td.expand(*batch_size).contiguous()
    return td


def _specs_of(td: TensorDictBase) -> Composite:
    return Composite(
        {
            key: _specs_of(value)
            if isinstance(value, TensorDictBase)
            else Unbounded(shape=value.shape, dtype=value.dtype, device=value.device)
            for key, value in td.items()
        },
        shape=td.shape,
        device=td.device,
    )


class PendulumEnv(EnvBase):
    """Stateless Pendulum-v1 (tutorial design) with the physics in `dynamics`.

    Args:
        params: a tensordict from `make_params` (defaults: gymnasium's values). Its batch
            size is the environment's batch size and sets the spec shapes; the environment
            is batch-unlocked, so `reset(make_params(..., batch_size=[n]))` runs n pendulums.
        init_angle, init_speed: resets draw th ~ U(-init_angle, init_angle) and
            thdot ~ U(-init_speed, init_speed) from the environment's own generator.
            A reset tensordict that already holds "th" and "thdot" starts from those.
        seed: seeds that generator (no global RNG is touched); None draws one.
    """

    batch_locked = False

    def __init__(
        self,
        params: TensorDictBase | None = None,
        *,
        init_angle: float = math.pi,
        init_speed: float = 1.0,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ):
        if params is None:
            params = make_params(device=device)
        super().__init__(device=device, batch_size=params.shape)
        self.init_angle, self.init_speed = float(init_angle), float(init_speed)
        self._make_spec(params.to(self.device))
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_())
        self.set_seed(seed)

    def _make_spec(self, td_params: TensorDictBase) -> None:
        shape = td_params.shape
        p = td_params["params"]
        self.observation_spec = Composite(
            th=Unbounded(shape=shape, dtype=torch.float32, device=self.device),
            thdot=Bounded(
                low=-p["max_speed"],
                high=p["max_speed"],
                shape=shape,
                dtype=torch.float32,
                device=self.device,
            ),
            params=_specs_of(p),
            shape=shape,
            device=self.device,
        )
        self.state_spec = self.observation_spec.clone()
        self.action_spec = Bounded(
            low=-p["max_torque"].unsqueeze(-1),
            high=p["max_torque"].unsqueeze(-1),
            shape=(*shape, 1),
            dtype=torch.float32,
            device=self.device,
        )
        self.reward_spec = Unbounded(shape=(*shape, 1), dtype=torch.float32, device=self.device)

    def gen_params(
        self, physics: Mapping[str, float] | None = None, batch_size: Sequence[int] | None = None
    ) -> TensorDict:
        return make_params(
            physics, self.batch_size if batch_size is None else batch_size, self.device
        )

    def initial_state(self, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Random start states (th, thdot) of `shape` from the environment's generator."""
        u = torch.rand((2, *shape), generator=self.rng, device=self.device)
        th = (2 * u[0] - 1) * self.init_angle
        thdot = (2 * u[1] - 1) * self.init_speed
        return th, thdot

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        if tensordict is None or "params" not in tensordict.keys():
            tensordict = self.gen_params()
        if "th" in tensordict.keys() and "thdot" in tensordict.keys():
            th, thdot = tensordict["th"], tensordict["thdot"]
        else:
            th, thdot = self.initial_state(tensordict.shape)
        return TensorDict(
            {"th": th, "thdot": thdot, "params": tensordict["params"]},
            batch_size=tensordict.shape,
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        new_th, new_thdot, reward = dynamics(
            tensordict["th"],
            tensordict["thdot"],
            tensordict["action"].squeeze(-1),
            tensordict["params"],
        )
        done = torch.zeros((*tensordict.shape, 1), dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "th": new_th,
                "thdot": new_thdot,
                "params": tensordict["params"],
                "reward": reward.unsqueeze(-1),
                "done": done,
                "terminated": done.clone(),
            },
            batch_size=tensordict.shape,
            device=self.device,
        )

    def _set_seed(self, seed: int | None) -> None:
        self.rng = torch.Generator(device=self.device)
        if seed is None:
            self.rng.seed()
        else:
            self.rng.manual_seed(int(seed))


class _UnitIntervalTransform(Transform):
    """Applies `fn` to each in_key; the result lies in [-1, 1] (a Bounded spec)."""

    fn: Callable[[torch.Tensor], torch.Tensor]

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fn(obs)

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return self._call(tensordict_reset)

    @_apply_to_composite
    def transform_observation_spec(self, observation_spec):
        return Bounded(
            low=-1.0,
            high=1.0,
            shape=observation_spec.shape,
            dtype=observation_spec.dtype,
            device=observation_spec.device,
        )


class SinTransform(_UnitIntervalTransform):
    fn = staticmethod(torch.sin)


class CosTransform(_UnitIntervalTransform):
    fn = staticmethod(torch.cos)


def observation(th: torch.Tensor, thdot: torch.Tensor) -> torch.Tensor:
    """What the transforms below put in "observation": [cos, sin, thdot] on the last dim."""
    features = {"cos": th.cos(), "sin": th.sin(), "thdot": thdot}
    return torch.stack([features[k] for k in OBSERVATION_KEYS], dim=-1)


def make_env(
    physics: Mapping[str, float] | None = None,
    *,
    batch_size: Sequence[int] = (),
    init_angle: float = math.pi,
    init_speed: float = 1.0,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> TransformedEnv:
    """The tutorial's transformed pendulum: th, thdot unsqueezed, sin/cos features, and
    their concatenation in "observation" (the policy's input)."""
    base = PendulumEnv(
        make_params(physics, batch_size, device),
        init_angle=init_angle,
        init_speed=init_speed,
        seed=seed,
        device=device,
    )
    env = TransformedEnv(
        base, UnsqueezeTransform(dim=-1, in_keys=["th", "thdot"], in_keys_inv=["th", "thdot"])
    )
    env.append_transform(SinTransform(in_keys=["th"], out_keys=["sin"]))
    env.append_transform(CosTransform(in_keys=["th"], out_keys=["cos"]))
    env.append_transform(
        CatTensors(
            in_keys=list(OBSERVATION_KEYS),
            dim=-1,
            out_key="observation",
            del_keys=False,
            sort=False,
        )
    )
    return env


def batched_rollout(
    policy: Callable[[torch.Tensor], torch.Tensor],
    th: torch.Tensor,
    thdot: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    steps: int,
) -> dict[str, torch.Tensor]:
    """`steps` steps of `dynamics` driven by `policy(observation) -> torque[..., 1]`.

    The same transition, reward and observation as `make_env(...).rollout(steps, policy)`
    (tested), without a tensordict per step, so it is cheap to differentiate and to
    `torch.compile`. Returns time-major tensors: "th", "thdot" and "action" of shape
    (steps, *batch) for the state before each step and its torque, "reward" likewise.
    """
    ths, thdots, actions, rewards = [], [], [], []
    for _ in range(steps):
        u = policy(observation(th, thdot)).squeeze(-1)
        ths.append(th)
        thdots.append(thdot)
        actions.append(u)
        th, thdot, reward = dynamics(th, thdot, u, params)
        rewards.append(reward)
    return {
        "th": torch.stack(ths),
        "thdot": torch.stack(thdots),
        "action": torch.stack(actions),
        "reward": torch.stack(rewards),
    }
