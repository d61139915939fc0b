"""Which gymnasium tasks a config may name, and what each of them supports, checked when
the config is validated (at parse time, not in a job).

Where gymnasium is not installed (a snakemake that runs every job in the image), these
checks are left to the jobs: each verb validates its config again inside the image.
"""

from __future__ import annotations

import importlib.util

from rl.core.errors import ConfigError

# The tasks rl.ppo.warp implements (env.backend: mujoco-warp).
WARP_TASKS = ("InvertedDoublePendulum-v5",)
# The tasks whose observation and reward rl.ppo.mjbatch computes (env.backend: mujoco-batch).
BATCH_TASKS = ("InvertedDoublePendulum-v5", "InvertedPendulum-v5")
BACKEND_TASKS = {"mujoco-warp": WARP_TASKS, "mujoco-batch": BATCH_TASKS}


def _registry():
    if importlib.util.find_spec("gymnasium") is None:
        return None
    import gymnasium  # registers the ids; light (no torch)

    return gymnasium.registry


def check_env_id(env_id: str, source: str = "the config") -> None:
    """A registered gymnasium id, or a ConfigError naming the key."""
    registry = _registry()
    if registry is None or env_id in registry:
        return
    name = env_id.split("-")[0]
    close = sorted(k for k in registry if k.split("-")[0] == name)
    raise ConfigError(
        f"Invalid config key 'env.id' in {source}: '{env_id}' is not a registered "
        f"gymnasium environment id (ids of that name: {', '.join(close) or 'none'}). "
        f"Use a registered id, e.g. InvertedDoublePendulum-v5."
    )


def is_mujoco(env_id: str) -> bool | None:
    """Whether gymnasium simulates `env_id` with MuJoCo (None: gymnasium not installed)."""
    registry = _registry()
    if registry is None:
        return None
    return "mujoco" in str(registry[env_id].entry_point)


def check_task(cfg: dict, source: str = "the config") -> None:
    """env.id registered; env.backend and video settings that the task supports."""
    env = cfg["env"]

    def fail(key: str, why: str, fix: str) -> None:
        raise ConfigError(f"Invalid config key '{key}' in {source}: {why}. {fix}")

    check_env_id(env["id"], source)
    tasks = BACKEND_TASKS.get(env["backend"])
    if tasks is not None and env["id"] not in tasks:
        able = [b for b, ids in BACKEND_TASKS.items() if env["id"] in ids]
        fail(
            "env.backend",
            f"{env['backend']} implements {', '.join(tasks)} only, not '{env['id']}'",
            f"Set env.backend to one that runs it: {', '.join(['gymnasium', *able])}.",
        )
    if cfg["video"]["enabled"] and is_mujoco(env["id"]) is False:
        fail(
            "video.enabled",
            f"the evaluation videos are rendered by MuJoCo, and {env['id']} is not a MuJoCo "
            f"task (gymnasium draws it with pygame, which the pipeline does not install)",
            "Set video.enabled: false for this task (no episode videos, no animations).",
        )
