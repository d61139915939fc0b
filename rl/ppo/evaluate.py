"""Deterministic evaluation of a trained PPO policy in a fresh, separately seeded env."""

from __future__ import annotations

import time

import pandas as pd
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

from rl.core.checkpoint import load
from rl.core.device import resolve_device
from rl.core.progress import Progress
from rl.ppo.copies import Copies
from rl.ppo.envs import make_eval_env
from rl.ppo.models import make_actor_critic


def evaluate_episode(env, actor, max_steps: int, on_state=None) -> tuple[float, int]:
    """One deterministic episode (the policy's mode); returns (raw return, length).

    `on_state(env)` is called after the reset and after every step but the last (the
    environment resets itself on that one): the states of the episode, one per step, for
    rendering. It must not act on the env; the episode is the same with or without it.
    """
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        if on_state is None and isinstance(env, Copies) and hasattr(actor, "get_dist"):
            return _episode(env, actor, max_steps)
        if on_state is None:
            rollout = env.rollout(max_steps, actor, break_when_any_done=True)
        else:
            start = env.reset()
            on_state(env)
            rollout = env.rollout(
                max_steps,
                actor,
                tensordict=start,
                auto_reset=False,
                break_when_any_done=True,
                callback=lambda env, _: on_state(env),
            )
    return float(rollout["next", "reward"].sum()), int(rollout["next", "step_count"].max())


def _episode(env: Copies, actor, max_steps: int) -> tuple[float, int]:
    """`env.rollout(max_steps, actor, break_when_any_done=True)`'s episode and its numbers,
    at a third of its cost: the env's own step without TorchRL's per-step checks and
    copies, and the actor's action as its distribution's deterministic sample (what the
    actor returns in this mode) without the log-probability it also computes. The rewards
    are summed as a rollout's [1, T, 1] tensor, so the return is the same float."""
    td = env.reset()
    rewards = []
    for _ in range(max_steps):
        td = env._step(td.set("action", actor.get_dist(td).deterministic_sample))
        rewards.append(td["reward"])
        if td["done"].any():
            break
    return float(torch.stack(rewards, dim=-2).sum()), int(td["step_count"].max())


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


def _eval_env(cfg: dict, seed: int, policy_path, obs_stats: dict, render_size=None, camera=None):
    """The evaluation env (seeded apart from training) and the trained actor."""
    device = resolve_device(cfg["device"])
    eval_seed = seed + cfg["evaluation"]["seed_offset"]
    torch.manual_seed(eval_seed)
    env = make_eval_env(
        cfg["env"],
        eval_seed,
        obs_stats=obs_stats,
        device=device,
        render_size=render_size,
        camera=camera,
    )
    actor, _ = load_actor(cfg, policy_path, device, env)
    return env, actor


def evaluate(cfg: dict, seed: int, policy_path, obs_stats: dict) -> pd.DataFrame:
    env, actor = _eval_env(cfg, seed, policy_path, obs_stats)
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


def pick_episodes(episodes: pd.DataFrame) -> dict[str, int]:
    """The episodes worth watching: the first, and the worst (lowest return; the earliest
    of equals, which may be the first)."""
    return {"first": 0, "worst": int(episodes["return"].to_numpy().argmin())}


def check_rendering(cfg: dict) -> None:
    """Render one frame of a fresh environment of the evaluation's kind, so that a missing
    OpenGL library is reported before the evaluation runs, not after it. This environment
    is not the evaluation's: the evaluation's numbers do not depend on it."""
    from rl.analysis.video import check_frames, render_error

    vcfg = cfg["video"]
    env = make_eval_env(
        cfg["env"], 0, render_size=(vcfg["width"], vcfg["height"]), camera=vcfg["camera"]
    )
    try:
        env.reset()
        try:
            frame = env.render()
        except Exception as exc:
            raise render_error(exc, vcfg["on_error"]) from exc
        check_frames([frame], "the first rendered frame")
    finally:
        env.close()


def record_episodes(cfg: dict, seed: int, policy_path, obs_stats: dict, episodes) -> dict:
    """Raw RGB frames of the episodes `pick_episodes` chooses, without captions.

    The evaluation is replayed in a fresh env made and seeded exactly as `evaluate` makes
    it, rendering only the chosen episodes; rendering reads the simulation and never draws
    random numbers, and each replayed episode must give the return and length `evaluate`
    wrote (checked), so the videos show exactly the episodes in episodes.csv.
    Returns {name: {episode, return, length, frames, render_ms_per_frame}}.
    """
    from rl.analysis.video import render_error

    vcfg = cfg["video"]
    picks = pick_episodes(episodes)
    cap = vcfg["max_frames"] or cfg["env"]["max_episode_steps"]
    env, actor = _eval_env(
        cfg, seed, policy_path, obs_stats, (vcfg["width"], vcfg["height"]), vcfg["camera"]
    )
    recorded: dict[int, dict] = {}
    try:
        for episode in range(max(picks.values()) + 1):
            frames: list = []
            seconds = [0.0]

            def on_state(env, frames=frames, seconds=seconds):
                if len(frames) < cap:
                    t0 = time.perf_counter()
                    try:
                        frames.append(env.render())
                    except Exception as exc:
                        raise render_error(exc, vcfg["on_error"]) from exc
                    seconds[0] += time.perf_counter() - t0

            watch = episode in picks.values()
            ret, length = evaluate_episode(
                env, actor, cfg["env"]["max_episode_steps"], on_state if watch else None
            )
            want = episodes.iloc[episode]
            if ret != float(want["return"]) or length != int(want["length"]):
                raise RuntimeError(
                    f"Replaying evaluation episode {episode} for its video gave return {ret} "
                    f"and length {length}, not the evaluated {want['return']} and "
                    f"{want['length']}: the environment or the policy is not deterministic "
                    f"here. Set video.enabled: false to evaluate without videos."
                )
            if watch:
                recorded[episode] = {
                    "return": ret,
                    "length": length,
                    "frames": frames,
                    "render_ms_per_frame": 1000 * seconds[0] / max(1, len(frames)),
                }
    finally:
        env.close()
    return {name: {"episode": i, **recorded[i]} for name, i in picks.items()}


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
