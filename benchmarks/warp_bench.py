"""Frames per second of the training env's physics: mujoco-warp (env.backend: mujoco-warp)
beside gymnasium's MuJoCo (rl.envs.TrainingCopies, the default backend), same run.

A frame is one env step of one world (5 MuJoCo steps), taken the way the collector takes it
(`step_and_maybe_reset`: finished worlds restart), with uniform random actions drawn on the
env's device. Medians over repeats; the gymnasium baseline at the world counts up to
--baseline-max-worlds (its cost grows linearly with them).

    python benchmarks/warp_bench.py --device cuda --worlds 1024 4096 16384   # the GPU machine
    python benchmarks/warp_bench.py --device cpu --worlds 16 64 256          # here (slow)

Writes benchmarks/history/<time>-warp-<device>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import REPO, machine  # noqa: E402

from rl.ppo.envs import TrainingCopies  # noqa: E402
from rl.ppo.warp import WarpCopies  # noqa: E402

TASK = "InvertedDoublePendulum-v5"


def frames_per_second(env, steps: int, device: torch.device) -> float:
    """`steps` collector steps of every world after 3 of warm-up (kernel loads, graph
    capture); the clock stops after the device has finished."""
    td = env.reset()
    low, high = env.action_spec.space.low, env.action_spec.space.high

    def step(td):
        td["action"] = low + (high - low) * torch.rand(low.shape, device=device)
        return env.step_and_maybe_reset(td)[1]

    for _ in range(3):
        td = step(td)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        td = step(td)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * env.batch_size[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worlds", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-max-worlds", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "history")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    for n in args.worlds:
        kinds = [("mujoco-warp", lambda n=n: WarpCopies(TASK, [1000] * n, device=device))]
        if n <= args.baseline_max_worlds:
            kinds.append(("gymnasium", lambda n=n: TrainingCopies(TASK, [1000] * n)))
        for backend, make in kinds:
            env = make()
            env.set_seed(0)
            on = device if backend == "mujoco-warp" else torch.device("cpu")
            fps = [frames_per_second(env, args.steps, on) for _ in range(args.repeats)]
            rows.append(
                {"backend": backend, "worlds": n, "fps_median": statistics.median(fps), "fps": fps}
            )
            print(f"{backend:12s} {n:6d} worlds  {statistics.median(fps):12,.0f} frames/s")
    best = {
        b: max((r["fps_median"] for r in rows if r["backend"] == b), default=None)
        for b in ("mujoco-warp", "gymnasium")
    }
    result = {
        "machine": machine(),
        "device": str(device),
        "steps": args.steps,
        "repeats": args.repeats,
        "rows": rows,
        "warp_best_fps": best["mujoco-warp"],
        "gymnasium_best_fps": best["gymnasium"],
    }
    if best["gymnasium"]:
        result["warp_over_gymnasium_best"] = best["mujoco-warp"] / best["gymnasium"]
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "machine")}))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.out / f"{stamp}-warp-{device.type}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
