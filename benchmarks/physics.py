"""The physics limit: how fast MuJoCo alone steps a task on one core, the ceiling that a
whole PPO run's frames/s is measured against (docs/benchmarks.md).

    python benchmarks/physics.py [--env-id InvertedDoublePendulum-v5] [--seconds 3]

A bare `mj_step` loop on one MjData of the task's model (gymnasium's model, integrator
and timestep) under random controls, restarted from the task's start state when the
pendulum falls, in this process on one thread: substeps/s, and env frames/s = substeps/s
/ frame_skip. `limit(cores)` is that times the cores, the most any collection on those
cores could simulate; mujoco.batch on the same cores is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium
import mujoco
import numpy as np
from mujoco.batch import Batch


def physics_limit(env_id: str, cores: int, seconds: float = 3.0) -> dict:
    """One core's mj_step rate (median of 3 timed stretches) and the limit on `cores`."""
    task = gymnasium.make(env_id).unwrapped
    model, data = task.model, mujoco.MjData(task.model)
    rng = np.random.default_rng(0)
    controls = rng.uniform(-1, 1, (4096, model.nu))
    rates = []
    for _ in range(3):
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            for u in controls[:256]:
                data.ctrl[:] = u
                mujoco.mj_step(model, data, nstep=task.frame_skip)
                if abs(data.qpos[1]) > 0.6:  # fallen: the task's start again
                    mujoco.mj_resetData(model, data)
            steps += 256 * task.frame_skip
        rates.append(steps / (time.perf_counter() - t0))
    per_core = float(np.median(rates))
    batch = _batch_rate(task, cores, controls, seconds / 3)
    return {
        "env_id": env_id,
        "frame_skip": task.frame_skip,
        "mj_step_substeps_per_s_one_core": per_core,
        "frames_per_s_one_core": per_core / task.frame_skip,
        "cores": cores,
        "physics_limit_frames_per_s": cores * per_core / task.frame_skip,
        "mujoco_batch_frames_per_s": batch,
    }


def _batch_rate(task, cores: int, controls: np.ndarray, seconds: float) -> float:
    """Env frames/s of mujoco.batch stepping 64 copies on `cores` threads (no Python per
    copy), for comparison with the limit."""
    n = 64
    batch = Batch(task.model, n, nthread=cores, persistent=True)
    ctrl, frames, t0 = batch.bind("ctrl"), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, 4096 - n, n):
            ctrl[:] = controls[i : i + n]
            batch.step(nstep=task.frame_skip)
            frames += n
        batch.reset()
    return frames / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="InvertedDoublePendulum-v5")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(physics_limit(args.env_id, args.cores, args.seconds)))


if __name__ == "__main__":
    main()
