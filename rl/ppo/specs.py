"""The specs every PPO training env shares (TrainingCopies, WarpCopies)."""

from __future__ import annotations

import torch
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase


def cleared_flags(env: EnvBase) -> dict[str, torch.Tensor]:
    """done/terminated/truncated all False, as a reset returns them (both envs' `current`)."""
    flags = torch.zeros((env.batch_size[0], 1), dtype=torch.bool, device=env.device)
    return {"done": flags, "terminated": flags.clone(), "truncated": flags.clone()}


def set_task_specs(env: EnvBase, obs_dim: int, low, high, max_steps: int) -> None:
    """The specs of a training env of batch [n] (TrainingCopies, WarpCopies): float32
    observations and a step count, float32 actions in [low, high], a float32 reward, and
    done/terminated/truncated flags."""
    n, device, f32 = env.batch_size[0], env.device, torch.float32
    env.observation_spec = Composite(
        observation=Unbounded((n, obs_dim), dtype=f32, device=device),
        step_count=Bounded(0, max_steps, (n, 1), dtype=torch.int64, device=device),
        shape=(n,),
        device=device,
    )
    low = torch.as_tensor(low, dtype=f32).expand(n, -1)
    high = torch.as_tensor(high, dtype=f32).expand(n, -1)
    env.action_spec = Bounded(low, high, low.shape, dtype=f32, device=device)
    env.reward_spec = Unbounded((n, 1), dtype=f32, device=device)
    flag = Categorical(2, (n, 1), dtype=torch.bool, device=device)
    env.done_spec = Composite(
        done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(n,), device=device
    )
