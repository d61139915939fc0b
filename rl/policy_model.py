"""The trained PPO actor as a self-contained torch module, for MLflow's pytorch flavor.

`mlflow.pytorch.load_model(uri)` returns a `DeterministicPolicy`: raw gymnasium
observations in (float32, shape (..., obs_dim)), the deterministic action out, through the
same observation normalisation and the same TorchRL actor that `evaluate-ppo` uses. It is
pickled by value, so loading needs torch, torchrl and tensordict but not this package.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type


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
    import copy

    actor = copy.deepcopy(actor).cpu().eval()
    for module in actor.modules():  # the TanhNormal bounds are plain tensors, not buffers
        kwargs = getattr(module, "distribution_kwargs", None)
        if isinstance(kwargs, dict):
            module.distribution_kwargs = {
                k: v.cpu() if torch.is_tensor(v) else v for k, v in kwargs.items()
            }
    return DeterministicPolicy(actor, obs_stats["loc"], obs_stats["scale"])
