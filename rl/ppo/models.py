"""Actor and critic for continuous control (MLPs behind TorchRL's policy wrappers), and the
trained actor as a self-contained torch module for MLflow's pytorch flavor.

`mlflow.pytorch.load_model(uri)` returns a `DeterministicPolicy`: raw gymnasium
observations in (float32, shape (..., obs_dim)), the deterministic action out, through the
same observation normalisation and the same TorchRL actor that `evaluate-ppo` uses. It is
pickled by value, so loading needs torch, torchrl and tensordict but not this package.
"""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator

from rl.core.nets import ACTIVATIONS


def make_actor_critic(
    ppo_cfg: dict, obs_dim: int, action_spec, device: str | torch.device
) -> tuple[ProbabilisticActor, ValueOperator]:
    act_dim = action_spec.shape[-1]
    hidden = [ppo_cfg["num_cells"]] * ppo_cfg["depth"]
    activation = ACTIVATIONS[ppo_cfg["activation"]]
    actor_net = nn.Sequential(
        MLP(
            in_features=obs_dim,
            out_features=2 * act_dim,
            num_cells=hidden,
            activation_class=activation,
            device=device,
        ),
        NormalParamExtractor(),
    )
    low = action_spec.space.low.reshape(-1, act_dim)[0].to(device)
    high = action_spec.space.high.reshape(-1, act_dim)[0].to(device)
    actor = ProbabilisticActor(
        module=TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": low, "high": high},
        return_log_prob=True,
    )
    critic_net = MLP(
        in_features=obs_dim,
        out_features=1,
        num_cells=hidden,
        activation_class=activation,
        device=device,
    )
    critic = ValueOperator(module=critic_net, in_keys=["observation"])
    return actor, critic


class DeterministicPolicy(nn.Module):
    def __init__(self, actor: nn.Module, loc, scale):
        super().__init__()
        self.actor = actor
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    @torch.no_grad()
    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        obs = observation.to(self.loc.device, torch.float32)
        td = TensorDict({"observation": (obs - self.loc) / self.scale}, batch_size=obs.shape[:-1])
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            return self.actor(td)["action"]


def deterministic_policy(actor: nn.Module, obs_stats: dict) -> DeterministicPolicy:
    """Wrap a trained actor (on the CPU, in eval mode) with its normalisation statistics."""
    actor = copy.deepcopy(actor).cpu().eval()
    for module in actor.modules():  # the TanhNormal bounds are plain tensors, not buffers
        kwargs = getattr(module, "distribution_kwargs", None)
        if isinstance(kwargs, dict):
            module.distribution_kwargs = {
                k: v.cpu() if torch.is_tensor(v) else v for k, v in kwargs.items()
            }
    return DeterministicPolicy(actor, obs_stats["loc"], obs_stats["scale"])


def exportable_policy(actor: nn.Module, obs_stats: dict) -> tuple[DeterministicPolicy, object]:
    """The policy to log as an MLflow model and an input example (a batch of 2 raw
    observations, so the batch dimension is exported as dynamic)."""
    import numpy as np

    loc, scale = np.asarray(obs_stats["loc"]), np.asarray(obs_stats["scale"])
    example = np.stack([loc, loc + scale]).astype(np.float32)
    return deterministic_policy(actor, obs_stats), example
