"""Baseline: the PyTorch tutorial "Pendulum: Writing your environment and transforms with
TorchRL" (https://pytorch.org/tutorials/advanced/pendulum.html): the stateless PendulumEnv
and its differentiable-control training, ported only as far as the installed TorchRL API
requires; its settings (batch 32, 100-step rollouts, 3x64 tanh MLP, Adam 2e-3, cosine
schedule, gradient clipping at 1.0) are the tutorial's.

It is kept unchanged on purpose: it is the yardstick that benchmarks/pendulum_bench.py runs
beside our training code in the same run, so do not tune, refactor or "fix" it (only the
formatting follows the project's ruff style). The benchmarks cap its threads from outside.

usage: python tutorial_pendulum.py [TOTAL=20000] [SEED=0]
prints one JSON line (iterations, seconds, iters_per_second, mean_last_reward_last10, ...).
"""

import json
import sys
import time
from collections import defaultdict

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import CatTensors, EnvBase, Transform, TransformedEnv, UnsqueezeTransform
from torchrl.envs.transforms.transforms import _apply_to_composite
from torchrl.envs.utils import check_env_specs

DEFAULT_X = np.pi
DEFAULT_Y = 1.0


def _step(tensordict):
    th, thdot = tensordict["th"], tensordict["thdot"]
    g_force = tensordict["params", "g"]
    mass = tensordict["params", "m"]
    length = tensordict["params", "l"]
    dt = tensordict["params", "dt"]
    u = tensordict["action"].squeeze(-1)
    u = u.clamp(-tensordict["params", "max_torque"], tensordict["params", "max_torque"])
    costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
    new_thdot = thdot + (3 * g_force / (2 * length) * th.sin() + 3.0 / (mass * length**2) * u) * dt
    new_thdot = new_thdot.clamp(
        -tensordict["params", "max_speed"], tensordict["params", "max_speed"]
    )
    new_th = th + new_thdot * dt
    reward = -costs.view(*tensordict.shape, 1)
    done = torch.zeros_like(reward, dtype=torch.bool)
    return TensorDict(
        {
            "th": new_th,
            "thdot": new_thdot,
            "params": tensordict["params"],
            "reward": reward,
            "done": done,
        },
        tensordict.shape,
    )


def angle_normalize(x):
    return ((x + torch.pi) % (2 * torch.pi)) - torch.pi


def _reset(self, tensordict):
    if tensordict is None or tensordict.is_empty():
        tensordict = self.gen_params(batch_size=self.batch_size)
    high_th = torch.tensor(DEFAULT_X, device=self.device)
    high_thdot = torch.tensor(DEFAULT_Y, device=self.device)
    low_th = -high_th
    low_thdot = -high_thdot
    th = (
        torch.rand(tensordict.shape, generator=self.rng, device=self.device) * (high_th - low_th)
        + low_th
    )
    thdot = (
        torch.rand(tensordict.shape, generator=self.rng, device=self.device)
        * (high_thdot - low_thdot)
        + low_thdot
    )
    return TensorDict(
        {"th": th, "thdot": thdot, "params": tensordict["params"]}, batch_size=tensordict.shape
    )


def _make_spec(self, td_params):
    self.observation_spec = Composite(
        th=Bounded(low=-torch.pi, high=torch.pi, shape=(), dtype=torch.float32),
        thdot=Bounded(
            low=-td_params["params", "max_speed"],
            high=td_params["params", "max_speed"],
            shape=(),
            dtype=torch.float32,
        ),
        params=make_composite_from_td(td_params["params"]),
        shape=(),
    )
    self.state_spec = self.observation_spec.clone()
    self.action_spec = Bounded(
        low=-td_params["params", "max_torque"],
        high=td_params["params", "max_torque"],
        shape=(1,),
        dtype=torch.float32,
    )
    self.reward_spec = Unbounded(shape=(*td_params.shape, 1))


def make_composite_from_td(td):
    return Composite(
        {
            key: make_composite_from_td(t)
            if isinstance(t, TensorDictBase)
            else Unbounded(dtype=t.dtype, device=t.device, shape=t.shape)
            for key, t in td.items()
        },
        shape=td.shape,
    )


def _set_seed(self, seed: int | None):
    self.rng = torch.manual_seed(seed)


def gen_params(g=10.0, batch_size=None) -> TensorDictBase:
    if batch_size is None:
        batch_size = []
    td = TensorDict(
        {
            "params": TensorDict(
                {"max_speed": 8, "max_torque": 2.0, "dt": 0.05, "g": g, "m": 1.0, "l": 1.0}, []
            )
        },
        [],
    )
    if batch_size:
        td = td.expand(batch_size).contiguous()
    return td


class PendulumEnv(EnvBase):
    batch_locked = False

    def __init__(self, td_params=None, seed=None, device="cpu"):
        if td_params is None:
            td_params = self.gen_params()
        super().__init__(device=device, batch_size=[])
        self._make_spec(td_params)
        if seed is None:
            seed = torch.empty((), dtype=torch.int64).random_().item()
        self.set_seed(seed)

    gen_params = staticmethod(gen_params)
    _make_spec = _make_spec
    _reset = _reset
    _step = staticmethod(_step)
    _set_seed = _set_seed


class SinTransform(Transform):
    def _apply_transform(self, obs):
        return obs.sin()

    def _reset(self, tensordict, tensordict_reset):
        return self._call(tensordict_reset)

    @_apply_to_composite
    def transform_observation_spec(self, observation_spec):
        return Bounded(
            low=-1,
            high=1,
            shape=observation_spec.shape,
            dtype=observation_spec.dtype,
            device=observation_spec.device,
        )


class CosTransform(Transform):
    def _apply_transform(self, obs):
        return obs.cos()

    def _reset(self, tensordict, tensordict_reset):
        return self._call(tensordict_reset)

    @_apply_to_composite
    def transform_observation_spec(self, observation_spec):
        return Bounded(
            low=-1,
            high=1,
            shape=observation_spec.shape,
            dtype=observation_spec.dtype,
            device=observation_spec.device,
        )


total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
env = PendulumEnv()
env = TransformedEnv(
    env, UnsqueezeTransform(dim=-1, in_keys=["th", "thdot"], in_keys_inv=["th", "thdot"])
)
env.append_transform(SinTransform(in_keys=["th"], out_keys=["sin"]))
env.append_transform(CosTransform(in_keys=["th"], out_keys=["cos"]))
env.append_transform(
    CatTensors(in_keys=["sin", "cos", "thdot"], dim=-1, out_key="observation", del_keys=False)
)
check_env_specs(env)
torch.manual_seed(seed)
env.set_seed(seed)
net = nn.Sequential(
    nn.LazyLinear(64),
    nn.Tanh(),
    nn.LazyLinear(64),
    nn.Tanh(),
    nn.LazyLinear(64),
    nn.Tanh(),
    nn.LazyLinear(1),
)
policy = TensorDictModule(net, in_keys=["observation"], out_keys=["action"])
optim = torch.optim.Adam(policy.parameters(), lr=2e-3)
batch_size = 32
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, total)
logs = defaultdict(list)
t0 = time.time()
for _ in range(total // batch_size):
    init_td = env.reset(env.gen_params(batch_size=[batch_size]))
    rollout = env.rollout(100, policy, tensordict=init_td, auto_reset=False)
    traj_return = rollout["next", "reward"].mean()
    (-traj_return).backward()
    gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optim.step()
    optim.zero_grad()
    logs["return"].append(traj_return.item())
    logs["last_reward"].append(rollout[..., -1]["next", "reward"].mean().item())
    scheduler.step()
dt = time.time() - t0
print(
    json.dumps(
        {
            "iterations": total // batch_size,
            "seconds": round(dt, 2),
            "iters_per_second": round((total // batch_size) / dt, 2),
            "final_return": logs["return"][-1],
            "final_last_reward": logs["last_reward"][-1],
            "mean_last_reward_last10": float(np.mean(logs["last_reward"][-10:])),
        }
    )
)
