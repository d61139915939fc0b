"""Baseline: the PyTorch tutorial "Reinforcement Learning (PPO) with TorchRL Tutorial"
(https://pytorch.org/tutorials/intermediate/reinforcement_ppo.html), ported only as far as
the installed TorchRL API requires; its hyper-parameters, networks and loop are the
tutorial's.

It is kept unchanged on purpose: it is the yardstick that benchmarks/ppo_bench.py runs
beside our training code in the same run, so do not tune, refactor or "fix" it (only the
formatting follows the project's ruff style). The benchmarks cap its threads from outside.

usage: python tutorial_ppo.py TOTAL_FRAMES [ENV_ID] [SEED]
prints one JSON line (frames_per_second, train_seconds, final_eval_return, ...).
"""

import json
import sys
import time
from collections import defaultdict

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.collectors import Collector as SyncDataCollector
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from torchrl.envs.libs.gym import GymEnv
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

total_frames = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
env_id = sys.argv[2] if len(sys.argv) > 2 else "InvertedDoublePendulum-v4"
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.manual_seed(seed)
device = "cuda:0" if torch.cuda.is_available() else "cpu"
num_cells = 256
lr = 3e-4
max_grad_norm = 1.0
frames_per_batch = 1000
sub_batch_size = 64
num_epochs = 10
clip_epsilon = 0.2
gamma = 0.99
lmbda = 0.95
entropy_eps = 1e-4

base_env = GymEnv(env_id, device=device)
env = TransformedEnv(
    base_env, Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter())
)
env.set_seed(seed)
t0 = time.time()
env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
t_norm = time.time() - t0
check_env_specs(env)

actor_net = nn.Sequential(
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(2 * env.action_spec.shape[-1], device=device),
    NormalParamExtractor(),
)
policy_module = TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"])
policy_module = ProbabilisticActor(
    module=policy_module,
    spec=env.action_spec,
    in_keys=["loc", "scale"],
    distribution_class=TanhNormal,
    distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
    return_log_prob=True,
)
value_net = nn.Sequential(
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(num_cells, device=device),
    nn.Tanh(),
    nn.LazyLinear(1, device=device),
)
value_module = ValueOperator(module=value_net, in_keys=["observation"])
policy_module(env.reset())
value_module(env.reset())
collector = SyncDataCollector(
    env,
    policy_module,
    frames_per_batch=frames_per_batch,
    total_frames=total_frames,
    split_trajs=False,
    device=device,
)
replay_buffer = ReplayBuffer(
    storage=LazyTensorStorage(max_size=frames_per_batch), sampler=SamplerWithoutReplacement()
)
advantage_module = GAE(
    gamma=gamma, lmbda=lmbda, value_network=value_module, average_gae=True, device=device
)
loss_module = ClipPPOLoss(
    actor_network=policy_module,
    critic_network=value_module,
    clip_epsilon=clip_epsilon,
    entropy_bonus=bool(entropy_eps),
    entropy_coeff=entropy_eps,
    critic_coeff=1.0,
    loss_critic_type="smooth_l1",
)
optim = torch.optim.Adam(loss_module.parameters(), lr)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, total_frames // frames_per_batch, 0.0)
logs = defaultdict(list)
t0 = time.time()
for i, tensordict_data in enumerate(collector):
    for _ in range(num_epochs):
        advantage_module(tensordict_data)
        replay_buffer.extend(tensordict_data.reshape(-1).cpu())
        for _ in range(frames_per_batch // sub_batch_size):
            subdata = replay_buffer.sample(sub_batch_size)
            loss_vals = loss_module(subdata.to(device))
            loss_value = (
                loss_vals["loss_objective"] + loss_vals["loss_critic"] + loss_vals["loss_entropy"]
            )
            loss_value.backward()
            torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
            optim.step()
            optim.zero_grad()
    logs["reward"].append(tensordict_data["next", "reward"].mean().item())
    logs["step_count"].append(tensordict_data["step_count"].max().item())
    if i % 10 == 0:
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            r = env.rollout(1000, policy_module)
            logs["eval reward (sum)"].append(r["next", "reward"].sum().item())
            logs["eval step_count"].append(r["step_count"].max().item())
    scheduler.step()
dt = time.time() - t0
print(
    json.dumps(
        {
            "env": env_id,
            "seed": seed,
            "total_frames": total_frames,
            "train_seconds": round(dt, 2),
            "norm_init_seconds": round(t_norm, 2),
            "frames_per_second": round(total_frames / dt, 1),
            "final_eval_return": logs["eval reward (sum)"][-1],
            "max_eval_return": max(logs["eval reward (sum)"]),
            "final_eval_steps": logs["eval step_count"][-1],
            "device": device,
        }
    )
)
