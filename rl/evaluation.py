"""Deterministic evaluation of a trained PPO policy in a fresh, separately seeded env."""

from __future__ import annotations

import pandas as pd
import torch

from rl.checkpoint import load
from rl.envs import make_env
from rl.models import make_actor_critic
from rl.ppo import evaluate_episode, resolve_device
from rl.progress import Progress


def load_actor(cfg: dict, policy_path, device, env):
    weights = load(policy_path, "trained policy")
    if "actor" not in weights:
        raise ValueError(
            f"'{policy_path}' holds no 'actor' weights: it is not a policy written by "
            f"`python -m rl train-ppo`. Rerun train_ppo for this seed."
        )
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor, _ = make_actor_critic(cfg["ppo"], obs_dim, env.action_spec, device)
    try:
        actor.load_state_dict(weights["actor"])
    except RuntimeError as exc:
        raise ValueError(
            f"The policy '{policy_path}' does not fit the network the config describes "
            f"(ppo.num_cells/depth/activation or env.id changed since training): {exc}. "
            f"Retrain with the current config or evaluate with the config it was trained with."
        ) from None
    return actor, weights


def evaluate(cfg: dict, seed: int, policy_path, obs_stats: dict) -> pd.DataFrame:
    device = resolve_device(cfg["device"])
    torch.manual_seed(seed + cfg["evaluation"]["seed_offset"])
    env, _ = make_env(
        cfg["env"],
        seed + cfg["evaluation"]["seed_offset"],
        num_envs=1,
        obs_stats=obs_stats,
        device=device,
    )
    actor, _ = load_actor(cfg, policy_path, device, env)
    n = cfg["evaluation"]["episodes"]
    progress = Progress(n, "episodes", cfg["progress"]["log_interval_seconds"])
    rows = []
    for episode in range(n):
        ret, length = evaluate_episode(env, actor, cfg["env"]["max_episode_steps"])
        rows.append({"episode": episode, "return": ret, "length": length})
        progress.update(episode + 1, ret=ret)
    progress.close()
    env.close()
    return pd.DataFrame(rows)


def summarise(episodes: pd.DataFrame) -> dict:
    r = episodes["return"]
    return {
        "episodes": int(len(episodes)),
        "return_mean": float(r.mean()),
        "return_std": float(r.std(ddof=0)),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
        "length_mean": float(episodes["length"].mean()),
    }
