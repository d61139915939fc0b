"""Frames per second of the training env's physics: mujoco-warp (env.backend: mujoco-warp)
beside gymnasium's MuJoCo (rl.envs.TrainingCopies, the default backend), same run.

A frame is one env step of one world (5 MuJoCo steps), taken the way the collector takes it
(`step_and_maybe_reset`: finished worlds restart), with uniform random actions drawn on the
env's device. Medians over repeats; the gymnasium baseline at the world counts up to
--baseline-max-worlds (its cost grows linearly with them).

    python benchmarks/warp_bench.py --device cuda --worlds 1024 4096 16384   # the GPU machine
    python benchmarks/warp_bench.py --device cpu --worlds 16 64 256          # here (slow)

`--loop`: the whole training loop instead (rl.ppo.train.train on configs/gpu.yaml's recipe
at each world count: batches of 16 steps of every world, 5 epochs of 8 minibatches; no
evaluation, no checkpoint), its steady frames/s after the first batch (`--compile`: as
gpu.yaml, compiled; graphed on CUDA).

Writes benchmarks/history/<time>-warp-<device>.json (`-warp-loop-`) and prints a table.
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


def loop_frames_per_second(worlds: int, batches: int, device: torch.device, compile: bool):
    """Steady frames/s of the training loop: frames over wall time after the first batch."""
    import tempfile

    from rl.core import config
    from rl.ppo.envs import observation_stats
    from rl.ppo.train import train

    n, never = worlds, 10**12
    sets = [f"env.num_envs={n}", f"ppo.frames_per_batch={16 * n}", f"ppo.minibatch_size={2 * n}"]
    sets += [f"ppo.total_frames={16 * n * batches}", f"ppo.eval_interval_frames={never}"]
    sets += [f"ppo.checkpoint_interval_frames={never}", f"device={device}"]
    sets += [f"ppo.compile={str(compile).lower()}", "mlflow.enabled=false"]
    cfg = config.load(REPO / "configs" / "gpu.yaml", sets)
    stats = observation_stats(cfg["env"], 1000, 0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = train(cfg, 0, stats, tmp)["state"]["metrics"]
    first, last = rows[0], rows[-1]
    return (last["frames"] - first["frames"]) / (last["wall_s"] - first["wall_s"]), first["wall_s"]


def loop_main(args, device: torch.device) -> None:
    rows = []
    for n in args.worlds:
        runs = [loop_frames_per_second(n, args.batches, device, args.compile)]
        runs += [loop_frames_per_second(n, args.batches, device, args.compile)
                 for _ in range(args.repeats - 1)]  # fmt: skip
        fps = [r[0] for r in runs]
        rows.append({"worlds": n, "fps_median": statistics.median(fps), "fps": fps,
                     "first_batch_s": [r[1] for r in runs]})  # fmt: skip
        print(f"training loop {n:6d} worlds  {statistics.median(fps):12,.0f} frames/s")
    import subprocess

    import rl

    code = Path(rl.__file__).resolve().parent.parent  # the package measured (PYTHONPATH may say)
    commit = subprocess.run(["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True)
    result = {"machine": machine(), "device": str(device), "loop": True, "rows": rows}
    result["package"] = {"path": str(code), "commit": commit.stdout.decode().strip()}
    result |= {"compile": args.compile, "batches": args.batches, "repeats": args.repeats}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.out / f"{stamp}-warp-loop-{device.type}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worlds", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-max-worlds", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "history")
    parser.add_argument("--loop", action="store_true", help="the training loop instead")
    parser.add_argument("--compile", action="store_true", help="--loop: ppo.compile true")
    parser.add_argument("--batches", type=int, default=6, help="--loop: batches per run")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if args.loop:
        return loop_main(args, device)
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
