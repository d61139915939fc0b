"""The checks a config's `compare:` section needs beyond the schema: its variants are the
compared methods, each trained on and scored against gymnasium's Pendulum-v1, and every
budget it names lands on a policy snapshot of every method.

A variant running the PPO study is a PPO arm (simulator steps = frames); one running the
pendulum study is a BPTT arm (an iteration of pendulum.batch_size rollouts of
pendulum.horizon steps costs batch_size x horizon simulator steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rl.core.errors import ConfigError

COMPARE_TASK = "Pendulum-v1"
PHYSICS = ("g", "m", "l", "dt", "max_torque", "max_speed")


def arm_steps(studies: list[str], cfg: dict) -> tuple[int, int]:
    """(simulator steps per training batch or iteration, total) of a variant."""
    if studies == ["ppo"]:
        return cfg["ppo"]["frames_per_batch"], cfg["ppo"]["total_frames"]
    p = cfg["pendulum"]
    return p["batch_size"] * p["horizon"], p["batch_size"] * p["horizon"] * p["iterations"]


def _task_physics(env_id: str) -> dict | None:
    """The evaluation task's physical constants (None without gymnasium: left to jobs)."""
    import importlib.util

    if importlib.util.find_spec("gymnasium") is None:
        return None
    import gymnasium

    task = gymnasium.make(env_id).unwrapped
    return {k: float(getattr(task, k)) for k in PHYSICS}


def _check_arm(name: str, studies: list[str], cfg: dict, source: str) -> None:
    def fail(key: str, why: str, fix: str) -> None:
        raise ConfigError(
            f"Invalid config key '{key}' in variant '{name}' of {source}: {why}. {fix}"
        )

    if len(studies) != 1:
        fail(
            f"variants[{name}].studies",
            f"a compared variant runs one method, this one runs {studies}",
            "Give each variant of a comparison studies: [ppo] or studies: [pendulum].",
        )
    env = cfg["env"]
    if env["id"] != COMPARE_TASK:
        fail(
            "env.id",
            f"the comparison scores every method on gymnasium's {COMPARE_TASK} (the task the "
            f"differentiable pendulum reproduces), not on '{env['id']}'",
            f"Set env.id: {COMPARE_TASK}.",
        )
    if env["max_episode_steps"] != 200:
        fail(
            "env.max_episode_steps",
            f"the evaluation episodes are the task's own 200 steps, not {env['max_episode_steps']}",
            "Set env.max_episode_steps: 200 (ppo.train_episode_steps sets training's).",
        )
    physics = _task_physics(COMPARE_TASK) if studies == ["pendulum"] else None
    for k, value in (physics or {}).items():
        if not math.isclose(cfg["pendulum"]["physics"][k], value):
            fail(
                f"pendulum.physics.{k}",
                f"{cfg['pendulum']['physics'][k]} trains a different pendulum from the "
                f"evaluation task's ({COMPARE_TASK}: {k}={value})",
                "Leave pendulum.physics at its defaults (gymnasium's) in a comparison.",
            )


def check_compare(
    cfg: dict, arms: Mapping[str, tuple[list[str], dict]], source: str = "the config"
) -> None:
    """`arms`: variant name -> (its studies, its resolved config)."""

    def fail(key: str, why: str, fix: str) -> None:
        raise ConfigError(f"Invalid config key '{key}' in {source}: {why}. {fix}")

    if len(arms) < 2:
        fail(
            "compare",
            f"a comparison needs at least two variants (the methods), this config has {len(arms)}",
            "Declare variants: e.g. one with studies: [ppo], one with studies: [pendulum].",
        )
    c = cfg["compare"]
    every, budgets = c["snapshot_every"], c["budgets"]
    for name, (studies, vcfg) in arms.items():
        _check_arm(name, studies, vcfg, source)
        step, total = arm_steps(studies, vcfg)
        if every % step or total % every:
            what = "ppo.frames_per_batch" if studies == ["ppo"] else "batch_size x horizon"
            fail(
                "compare.snapshot_every",
                f"{every} simulator steps must be a whole number of the training steps of "
                f"variant '{name}' ({what} = {step}) and divide its budget ({total})",
                "Choose a common multiple of every variant's step size that divides each "
                "variant's total steps.",
            )
        late = [b for b in budgets if b > total]
        if late:
            fail(
                "compare.budgets",
                f"{late[0]} simulator steps exceed the budget of variant '{name}' ({total})",
                "Compare at budgets every variant reaches, or train it longer.",
            )
    off = [b for b in budgets if b % every]
    if off:
        fail(
            "compare.budgets",
            f"{off[0]} is not a multiple of compare.snapshot_every={every}, so no snapshot "
            f"sits at that budget",
            "Make every budget a multiple of snapshot_every.",
        )
    pair = c["pair"]
    if pair is not None and (pair[0] == pair[1] or any(p not in arms for p in pair)):
        fail(
            "compare.pair",
            f"{pair} must name two different variants among {list(arms)}",
            "Name two of the study's variants, or null for the first two.",
        )


# The compare keys that decide per-seed results (snapshots, their scores, the probe): a
# finished study refuses a change of these; the statistics' keys may change freely.
RESULT_KEYS = ("snapshot_every", "episodes", "seed_offset")
RESULT_KEYS += ("probe_horizons", "probe_batch", "probe_repeats")
