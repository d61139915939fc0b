"""The PPO update of one collected batch: GAE, minibatches without replacement, and the
minibatch step (clipped surrogate loss, backward, clipped gradient, Adam), with the batch's
metrics left on the device.

Nothing here reads a tensor on the host (no `.item()`, `float()`, `bool()` of a tensor), so
a batch on a GPU never waits for it: the metrics come back as one vector that the loop
copies when it reports (rl.ppo.train: on CUDA once per log interval). The minibatch step is
one function; `make_step` runs it eagerly, compiles the loss alone (`ppo.compile` on the
gymnasium backend, as ever), or compiles the whole step and, on CUDA, replays it as a CUDA
graph (the GPU-resident loop of env.backend mujoco-warp with ppo.compile:
rl.ppo.resident.graphed).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from rl.ppo.resident import graphed

# The device metrics of a batch, in this order (one float64 vector; rl.ppo.train makes the
# rows of train_metrics.csv from it).
METRICS = (
    "train_reward_mean",
    "train_max_episode_length",
    "loss_objective",
    "loss_critic",
    "loss_entropy",
    "entropy",
    "grad_norm",
    "lr",
)


class SyncFreeGAE(GAE):
    """TorchRL's GAE without its scan for NaN next observations, which reads `nan.any()` on
    the host at every call (a sync on a GPU, a graph break under torch.compile). NaN next
    observations come only from TorchRL's compact_obs collectors; the training envs here
    return every next observation, so the scan never changes a number."""

    @staticmethod
    def _sanitize_next_obs_nan(data, in_keys):
        return data


def make_advantage(critic, ppo: dict, device: torch.device) -> GAE:
    return SyncFreeGAE(
        gamma=ppo["gamma"],
        lmbda=ppo["lmbda"],
        value_network=critic,
        average_gae=True,
        device=device,
    )


def make_loss(actor, critic, ppo: dict) -> ClipPPOLoss:
    return ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=ppo["clip_epsilon"],
        entropy_bonus=ppo["entropy_coef"] > 0,
        entropy_coeff=ppo["entropy_coef"],
        critic_coeff=ppo["critic_coef"],
        loss_critic_type=ppo["loss_critic_type"],
        # Use actor and critic as they are: the functional default swaps a parameter copy
        # into both modules on every call.
        functional=False,
    )


def make_step(loss_module, optim, params: list, ppo: dict, *, graph: bool, device):
    """One Adam step on one minibatch; returns the minibatch's losses and the gradient norm
    (before clipping) as a TensorDict on the device.

    graph False: eager, the loss alone compiled when ppo.compile says so. graph True: the
    whole step compiled (forward, backward, clipping, Adam) and on CUDA replayed as a CUDA
    graph; the optimiser's lr is then a tensor the schedule updates in place."""

    def loss_terms(minibatch):
        losses = loss_module(minibatch)
        loss = losses["loss_objective"] + losses["loss_critic"]
        if "loss_entropy" in losses.keys():
            loss = loss + losses["loss_entropy"]
        return loss, losses.detach()

    if ppo["compile"] and not graph:
        loss_terms = torch.compile(loss_terms)

    def step(minibatch: TensorDict) -> TensorDict:
        loss, losses = loss_terms(minibatch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, ppo["max_grad_norm"])
        optim.step()
        optim.zero_grad(set_to_none=True)
        return losses.set("grad_norm", grad_norm)

    # calls before the capture: the first compiles, the second recompiles once Adam has its
    # state; a capture must not meet a recompilation
    return graphed(step, device, warmup=5) if graph else step


def update(data: TensorDict, advantage: GAE, step, ppo: dict) -> TensorDict:
    """PPO epochs over one collected batch: GAE recomputed each epoch with the current critic,
    the batch split afresh into minibatches without replacement; the last minibatch's
    losses returned.

    The on-policy buffer is made per batch: no sampler state outlives a batch, so a resumed
    run draws the same minibatches as an uninterrupted one. `compilable`: its write cursor
    stays a tensor (the default one is read on the host at every write)."""
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ppo["frames_per_batch"], device=data.device, compilable=True),
        sampler=SamplerWithoutReplacement(drop_last=True),
        batch_size=ppo["minibatch_size"],
        compilable=True,
    )
    for _ in range(ppo["num_epochs"]):
        with torch.no_grad():
            advantage(data)
        buffer.extend(data.reshape(-1))
        for minibatch in buffer:
            out = step(minibatch)
    return out


def batch_metrics(data: TensorDict, losses: TensorDict, lr: float | torch.Tensor) -> torch.Tensor:
    """The batch's metrics (METRICS order) as one float64 vector on the device, computed
    without a host read. float64 holds every float32 loss and the int64 episode length
    exactly, and a float lr as it is, so the rows equal those of a loop that read each value
    on the spot. The reward is still scaled (rl.ppo.train divides by ppo.reward_scale)."""
    like = losses["loss_objective"]
    f64 = {"dtype": torch.float64, "device": like.device}
    lr = lr.to(**f64) if torch.is_tensor(lr) else torch.full((), lr, **f64)
    values = [
        data["next", "reward"].mean(),
        data["next", "step_count"].max(),
        like,
        losses["loss_critic"],
        losses.get("loss_entropy", torch.zeros((), **f64)),
        losses.get("entropy", torch.full((), float("nan"), **f64)),
        losses["grad_norm"],
    ]
    return torch.stack([v.to(**f64) for v in values] + [lr])
