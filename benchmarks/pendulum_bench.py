"""Pendulum benchmark: our train_pendulum beside the tutorial baseline, in one invocation.

    python benchmarks/pendulum_bench.py                 # 3 seeds, ours compiled, 1 thread
    python benchmarks/pendulum_bench.py --seeds 0 1 2 3 4 --single-thread-baseline
    python benchmarks/pendulum_bench.py --no-compile --threads 2   # ours in eager mode

Both train with the tutorial's settings (batch 32, 100-step rollouts, 3x64 tanh MLP, Adam
2e-3, cosine T_max 20000, gradient clipping at 1.0, 20000 // 32 = 625 iterations) in fresh
processes, alternating baseline and ours seed by seed so both see the same machine load.
The baseline is benchmarks/baselines/tutorial_pendulum.py, unchanged; ours is
`rl.pendulum.train` (the product code) with `pendulum.compile` as asked.

Reported per implementation: iterations/s (the baseline's own figure: iterations over its
training-loop time; ours the same, with and without the first iteration, which holds the
one-off torch.compile), and the final-step reward (each seed's mean over its last 10
iterations; the target is >= -0.05). Medians over seeds; the speed-up is the median of the
per-seed ratios. Prints a table and writes a JSON under results/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import REPO, baseline_path, run_json

TUTORIAL = {
    "iterations": 20_000 // 32,
    "batch_size": 32,
    "horizon": 100,
    "num_cells": 64,
    "depth": 3,
    "activation": "tanh",
    "lr": 2e-3,
    "lr_schedule_steps": 20_000,
    "max_grad_norm": 1.0,
}
TARGET_SPEEDUP, TARGET_REWARD = 10.0, -0.05


def worker(seed: int, compile: bool, threads: int | None) -> dict:
    """One training run of the product code with the tutorial's settings."""
    import tempfile

    import torch

    from rl.core import config
    from rl.pendulum.train import train

    if threads:
        torch.set_num_threads(threads)
    cfg = config.validate(
        {
            "study": "bench",
            "seeds": [seed],
            "pendulum": {**TUTORIAL, "compile": compile},
            "progress": {"log_interval_seconds": 3600},
        }
    )
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        rows = train(cfg, seed, out)["state"]["rows"]
        total = time.perf_counter() - t0
    n = len(rows)
    loop = rows[-1]["wall_s"]
    first = rows[0]["wall_s"]
    last10 = [r["final_step_reward"] for r in rows[-10:]]
    return {
        "iterations": n,
        "seconds": loop,
        "seconds_with_setup": total,
        "first_iteration_s": first,
        "iters_per_second": n / loop,
        "iters_per_second_after_first": (n - 1) / (loop - first),
        "median_iteration_iters_per_second": statistics.median(r["iters_per_s"] for r in rows),
        "final_return": rows[-1]["return"],
        "final_last_reward": rows[-1]["final_step_reward"],
        "mean_last_reward_last10": sum(last10) / len(last10),
        "threads": torch.get_num_threads(),
        "compile": compile,
    }


def bench(args) -> dict:
    baseline = baseline_path(args.baseline, "tutorial_pendulum.py")
    runs = []
    for seed in args.seeds:
        base = run_json(
            [sys.executable, str(baseline), str(20_000), str(seed)], timeout=args.timeout
        )
        print(f"seed {seed} tutorial: {base['iters_per_second']:.2f} it/s", flush=True)
        run = {"seed": seed, "tutorial": base}
        if args.single_thread_baseline:
            run["tutorial_1_thread"] = run_json(
                [sys.executable, str(baseline), str(20_000), str(seed)],
                timeout=args.timeout,
                threads=1,
            )
            print(
                f"seed {seed} tutorial, 1 thread: "
                f"{run['tutorial_1_thread']['iters_per_second']:.2f} it/s",
                flush=True,
            )
        ours = run_json(
            [
                sys.executable,
                __file__,
                "worker",
                "--seed",
                str(seed),
                *(["--compile"] if args.compile else []),
                *(["--threads", str(args.threads)] if args.threads else []),
            ],
            timeout=args.timeout,
        )
        print(
            f"seed {seed} ours: {ours['iters_per_second']:.2f} it/s "
            f"({ours['iters_per_second_after_first']:.2f} after the first iteration, "
            f"{ours['first_iteration_s']:.1f}s)",
            flush=True,
        )
        runs.append({**run, "ours": ours})

    def med(who: str, key: str) -> float:
        return statistics.median(r[who][key] for r in runs)

    def mean(who: str, key: str) -> float:
        return statistics.fmean(r[who][key] for r in runs)

    speedup = statistics.median(
        r["ours"]["iters_per_second_after_first"] / r["tutorial"]["iters_per_second"] for r in runs
    )
    speedup_incl = statistics.median(
        r["ours"]["iters_per_second"] / r["tutorial"]["iters_per_second"] for r in runs
    )
    summary = {
        "tutorial_iters_per_second": med("tutorial", "iters_per_second"),
        "ours_iters_per_second_after_first": med("ours", "iters_per_second_after_first"),
        "ours_iters_per_second": med("ours", "iters_per_second"),
        "ours_first_iteration_s": med("ours", "first_iteration_s"),
        "speedup_after_first": speedup,
        "speedup_including_first": speedup_incl,
        "tutorial_final_step_reward_last10": mean("tutorial", "mean_last_reward_last10"),
        "ours_final_step_reward_last10": mean("ours", "mean_last_reward_last10"),
    }
    if args.single_thread_baseline:
        summary["tutorial_1_thread_iters_per_second"] = med("tutorial_1_thread", "iters_per_second")
        summary["speedup_after_first_vs_1_thread_tutorial"] = statistics.median(
            r["ours"]["iters_per_second_after_first"] / r["tutorial_1_thread"]["iters_per_second"]
            for r in runs
        )
    summary["meets_target"] = (
        summary["speedup_after_first"] >= TARGET_SPEEDUP
        and summary["ours_final_step_reward_last10"] >= TARGET_REWARD
    )
    return {
        "when": datetime.now(UTC).isoformat(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "settings": {**TUTORIAL, "compile": args.compile, "threads": args.threads},
        "baseline": str(baseline),
        "runs": runs,
        "summary": summary,
    }


def report(result: dict) -> str:
    s, lines = result["summary"], []
    lines.append(f"{'':34}{'tutorial':>12}{'ours':>12}")
    lines.append(
        f"{'iterations/s (median over seeds)':34}{s['tutorial_iters_per_second']:>12.2f}"
        f"{s['ours_iters_per_second_after_first']:>12.2f}"
    )
    lines.append(
        f"{'  ours incl. first iteration':34}{'':>12}{s['ours_iters_per_second']:>12.2f}"
        f"   (first iteration {s['ours_first_iteration_s']:.1f}s)"
    )
    lines.append(
        f"{'final-step reward (last 10, mean)':34}{s['tutorial_final_step_reward_last10']:>12.4f}"
        f"{s['ours_final_step_reward_last10']:>12.4f}"
    )
    lines.append(
        f"speed-up (median of per-seed ratios): {s['speedup_after_first']:.1f}x "
        f"({s['speedup_including_first']:.1f}x including the first iteration); "
        f"target >= {TARGET_SPEEDUP:.0f}x at reward >= {TARGET_REWARD}: "
        f"{'met' if s['meets_target'] else 'NOT met'}"
    )
    if "tutorial_1_thread_iters_per_second" in s:
        lines.append(
            f"tutorial run with OMP_NUM_THREADS=1 (ours uses 1 thread): "
            f"{s['tutorial_1_thread_iters_per_second']:.2f} it/s, speed-up against it "
            f"{s['speedup_after_first_vs_1_thread_tutorial']:.1f}x"
        )
    for r in result["runs"]:
        t, o = r["tutorial"], r["ours"]
        lines.append(
            f"  seed {r['seed']}: tutorial {t['iters_per_second']:.2f} it/s, reward "
            f"{t['mean_last_reward_last10']:.4f} | ours {o['iters_per_second_after_first']:.2f} "
            f"it/s ({o['iters_per_second']:.2f} incl. first), reward "
            f"{o['mean_last_reward_last10']:.4f}"
        )
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        w = argparse.ArgumentParser(prog="pendulum_bench.py worker")
        w.add_argument("--seed", type=int, required=True)
        w.add_argument("--compile", action="store_true")
        w.add_argument("--threads", type=int)
        a = w.parse_args(sys.argv[2:])
        print(json.dumps(worker(a.seed, a.compile, a.threads)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="ours in eager mode"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours")
    parser.add_argument("--baseline", help="tutorial_pendulum.py or its folder")
    parser.add_argument(
        "--single-thread-baseline",
        action="store_true",
        help="also run the tutorial with OMP_NUM_THREADS=1, as ours runs",
    )
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args()
    result = bench(args)
    text = report(result)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"pendulum-{stamp}.json", "pendulum-latest.json"):
        tmp = out / f".{name}.tmp"
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out / name)
    print(f"-> {out / f'pendulum-{stamp}.json'}")


if __name__ == "__main__":
    main()
