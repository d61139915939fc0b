"""A recipe sweep for the best settings: each candidate (overrides of a config) trained on
several seeds until its first deterministic 9,100, one run at a time on this machine.

    python benchmarks/recipe_sweep.py [--config configs/fast.yaml] [--seeds 0 1 2]

Prints, per candidate, the median time and frames to 9,100 and the whole-run frames/s, and
writes every run to benchmarks/history/<time>-sweep-<config>.json (configs/fast.yaml's
recipe was chosen from such a file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchlib import REPO, machine, run_json

# Each candidate: overrides of the config (section.key=value), on mujoco-batch in one process.
BATCH = ["env.backend=mujoco-batch", "env.threads=2", "ppo.collector_workers=1"]
CANDIDATES = {
    "32 copies, 4,096-frame batches": BATCH,
    "64 copies": [*BATCH, "env.num_envs=64"],
    "64 copies, minibatch 1,024": [*BATCH, "env.num_envs=64", "ppo.minibatch_size=1024"],
    "64 copies, 3 epochs": [*BATCH, "env.num_envs=64", "ppo.num_epochs=3"],
    "64 copies, lr 8e-4": [*BATCH, "env.num_envs=64", "ppo.lr=0.0008"],
    "32 copies, 2,048-frame batches": [*BATCH, "ppo.frames_per_batch=2048"],
    "64 copies, evaluation every 12,288 frames": [
        *BATCH,
        "env.num_envs=64",
        "ppo.eval_interval_frames=12288",
    ],
    "64 copies, lr 1e-3": [*BATCH, "env.num_envs=64", "ppo.lr=0.001"],
    "128 copies, lr 8e-4": [*BATCH, "env.num_envs=128", "ppo.lr=0.0008"],
    "64 copies, lr 1.5e-3": [*BATCH, "env.num_envs=64", "ppo.lr=0.0015"],
    "128 copies, lr 1e-3": [*BATCH, "env.num_envs=128", "ppo.lr=0.001"],
    "64 copies, lr 1e-3, noise 0.3": [
        *BATCH,
        "env.num_envs=64",
        "ppo.lr=0.001",
        "ppo.train_reset_noise_scale=0.3",
    ],
    "64 copies, lr 8e-4, noise 0.3": [
        *BATCH,
        "env.num_envs=64",
        "ppo.lr=0.0008",
        "ppo.train_reset_noise_scale=0.3",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/fast.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--frames", type=int, help="training budget (default: the config's)")
    args = parser.parse_args()
    result = {"machine": machine(), "config": args.config, "seeds": args.seeds}
    result.update(frames=args.frames, candidates={})
    for name, sets in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for seed in args.seeds:
            cmd = [sys.executable, str(Path(__file__).with_name("ppo_bench.py")), "worker",
                   "--config", args.config, "--seed", str(seed), "--threads", "1",
                   "--until-solved"]  # fmt: skip
            for kv in sets:
                cmd += ["--set", kv]
            if args.frames:
                cmd += ["--frames", str(args.frames)]
            runs.append(run_json(cmd, timeout=1800, threads=1))
        times = [r["time_to_solve_s"] for r in runs]
        solved = [t for t in times if t is not None]
        row = {
            "overrides": sets,
            "time_to_solve_s": times,
            "frames_to_solve": [r["frames_to_solve"] for r in runs],
            "frames_per_s": [r["frames_per_second"] for r in runs],
            "median_s": statistics.median(solved) if len(solved) == len(times) else None,
            "runs": runs,
        }
        result["candidates"][name] = row
        print(
            f"{name}: 9,100 at {[None if t is None else round(t, 1) for t in times]} s, "
            f"{row['frames_to_solve']} frames, "
            f"{statistics.median(row['frames_per_s']):.0f} frames/s",
            flush=True,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = REPO / "benchmarks" / "history" / f"{stamp}-sweep-{Path(args.config).stem}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
