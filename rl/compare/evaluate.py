"""The one evaluator of the comparison: every policy snapshot of either method plays the
same gymnasium Pendulum-v1 episodes, and is scored by the task's own return.

The referee is gymnasium's environment itself (`gymnasium.make_vec`, the registered task:
its start distribution, its time limit, its reward, its clipping of the torque), not either
study's simulator: PPO trained on gymnasium's pendulum, the BPTT controller on our
differentiable copy of it, and both are judged on the same ground. Episode k of training
seed s starts from `reset(seed=compare.seed_offset + s * compare.episodes + k)`, whatever
the method and the snapshot, so at a given seed the two methods and all budgets face the
same starts. The policies act deterministically (PPO: its distribution's mode), so the
scores are a function of the weights and the seeds alone.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
import numpy as np
import pandas as pd
import torch

from rl.core.snapshots import PPO


def episode_seeds(cfg: dict, seed: int) -> list[int]:
    """The reset seeds of training seed `seed`'s evaluation episodes."""
    c = cfg["compare"]
    return [c["seed_offset"] + seed * c["episodes"] + k for k in range(c["episodes"])]


def play(
    policy: Callable[[torch.Tensor], torch.Tensor],
    env_id: str,
    seeds: list[int],
    max_steps: int,
) -> pd.DataFrame:
    """One episode per reset seed, side by side in a gymnasium vector env, the policy fed
    the batch of raw observations (float32) and returning raw actions. Returns per episode:
    its reset seed, return, length, and the fraction of its steps whose action lay outside
    the action bounds (the environment clips it there: a clamped torque, whose gradient
    through the simulator is zero)."""
    env = gymnasium.make_vec(
        env_id, num_envs=len(seeds), vectorization_mode="sync", max_episode_steps=max_steps
    )
    low, high = env.single_action_space.low, env.single_action_space.high
    obs, _ = env.reset(seed=list(seeds))
    n = len(seeds)
    total, length, clamped = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    with torch.no_grad():
        while alive.any():
            action = policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()
            outside = ((action < low) | (action > high)).any(axis=-1)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += np.where(alive, reward, 0.0)
            clamped += alive & outside
            length += alive
            alive &= ~(terminated | truncated)
    env.close()
    return pd.DataFrame(
        {
            "episode": np.arange(n),
            "reset_seed": list(seeds),
            "return": total,
            "length": length,
            "clamped_fraction": clamped / np.maximum(length, 1),
        }
    )


def ppo_policy(cfg: dict, weights: dict, obs_stats: dict) -> torch.nn.Module:
    """A PPO actor snapshot as raw observation -> deterministic action (the exported
    policy: the observation normalisation of its seed, then the actor's mode)."""
    from torchrl.data import Bounded

    from rl.ppo.models import deterministic_policy, make_actor_critic

    space = gymnasium.make(cfg["env"]["id"]).action_space
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    spec = Bounded(low=low, high=high, shape=space.shape, dtype=torch.float32)
    actor, _ = make_actor_critic(cfg["ppo"], len(obs_stats["loc"]), spec, "cpu")
    actor.load_state_dict(weights)
    return deterministic_policy(actor, obs_stats)


def bptt_policy(cfg: dict, weights: dict) -> torch.nn.Module:
    """A BPTT controller snapshot: raw observation [cos, sin, thdot] -> torque (unclamped;
    the environment clips it)."""
    from rl.pendulum.train import make_policy

    net = make_policy(cfg["pendulum"])
    net.load_state_dict(weights)
    return net.eval()


def evaluate_snapshots(cfg: dict, found: dict, seed: int) -> pd.DataFrame:
    """Every snapshot of a snapshots file (`rl.core.snapshots.read`) on the seed's
    episodes: one row per snapshot and episode, with the snapshot's axes and method."""
    seeds = episode_seeds(cfg, seed)
    frames = []
    for snap in found["snapshots"]:
        if found["method"] == PPO:
            policy = ppo_policy(cfg, snap["weights"], found["obs_stats"])
        else:
            policy = bptt_policy(cfg, snap["weights"])
        episodes = play(policy, cfg["env"]["id"], seeds, cfg["env"]["max_episode_steps"])
        axes = {k: snap[k] for k in ("sim_steps", "grad_steps", "wall_s")}
        frames.append(episodes.assign(method=found["method"], **axes))
    table = pd.concat(frames, ignore_index=True)
    first = ["method", "sim_steps", "grad_steps", "wall_s"]
    return table[first + [c for c in table.columns if c not in first]]
