"""Actor and critic for continuous control: MLPs behind TorchRL's policy wrappers."""

from __future__ import annotations

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


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
