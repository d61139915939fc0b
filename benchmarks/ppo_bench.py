"""PPO benchmark: our train_ppo beside the tutorial baseline, in one invocation.

    python benchmarks/ppo_bench.py quick   # engineering speed only (a few minutes)
    python benchmarks/ppo_bench.py full    # + time-to-solve and staying solved, >= 5 seeds

1. engineering speed: our `train_ppo` with the tutorial's own hyper-parameters
   (configs/tutorial.yaml) against benchmarks/baselines/tutorial_ppo.py, same frames, same
   environment id, alternating, in fresh processes; frames/s = frames / training wall time
   (evaluations included for both, imports excluded for both).
2. time-to-solve with our best settings (configs/paper.yaml's tuned base unless --config):
   wall seconds and frames from the start of training until the deterministic evaluation
   return first reaches 9,100; every seed then evaluated on the config's number of fresh
   episodes (20 for the paper recipe) at the end of its budget.
3. the physics limit (benchmarks/physics.py), measured in the same run: MuJoCo's own
   `mj_step` rate on one core times the cores the best settings' training job reserves;
   `physics_limit_fraction` is the best settings' whole-run frames/s (evaluations and the
   start of its envs included) over it. The quick mode times one seed of the best settings
   to its first 9,100; the full mode every seed over its whole budget.
The tutorial gets the same wall-clock budget as our median run. Results: a JSON under
benchmarks/history/ (tracked), latest.json beside it, a CSV, and a figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import REPO, baseline_path, machine, run_json
from physics import physics_limit

HISTORY = REPO / "benchmarks" / "history"
SOLVED = 9100.0


# ----------------------------------------------------------------------------- workers
class _Stop(Exception):
    """Raised by the worker's on_batch to end a run early (--until-solved, --max-seconds)."""


def worker(
    config: str,
    seed: int,
    frames: int | None,
    threads: int | None,
    final_eval: bool,
    overrides: list[str] = (),
    until_solved: bool = False,
    max_seconds: float | None = None,
):
    """Train one seed of ours in this process and print one JSON line. `until_solved`:
    stop at the first evaluation >= 9,100; `max_seconds`: stop after that much training
    (either way `stopped` says why, and the frames/s are those of the frames done)."""
    t_import = time.perf_counter()
    import torch

    from rl.core import config as config_mod
    from rl.ppo.envs import observation_stats
    from rl.ppo.evaluate import evaluate
    from rl.ppo.train import train

    import_s = time.perf_counter() - t_import
    if threads:
        torch.set_num_threads(threads)
    # --frames and each --set (section.key=value) applied to the file, then validated once
    sets = ([f"ppo.total_frames={frames}"] if frames else []) + list(overrides)
    cfg = config_mod.load(REPO / config, sets)
    cfg["mlflow"]["enabled"] = False
    stats = observation_stats(cfg["env"], cfg["obs_norm"]["steps"], seed)
    t0 = time.perf_counter()
    curve = []

    def on_batch(row, eval_row):
        if eval_row:
            point = {
                "wall_s": time.perf_counter() - t0,
                "frames": eval_row["frames"],
                "eval_return": eval_row["eval_return"],
                "fps": row["frames"] / (time.perf_counter() - t0),
            }
            curve.append(point)
            print("progress " + json.dumps(point), flush=True)  # survives a timeout kill
        rows.append(row)
        if until_solved and eval_row and eval_row["eval_return"] >= SOLVED:
            raise _Stop("solved")
        if max_seconds and time.perf_counter() - t0 >= max_seconds:
            raise _Stop("max_seconds")

    import tempfile

    rows, stopped = [], None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = train(cfg, seed, stats, tmp, on_batch=on_batch)
        except _Stop as stop:
            stopped, result = str(stop), None
        train_s = time.perf_counter() - t0
        frames_done = rows[-1]["frames"] if rows else 0
        out = {
            "who": "ours",
            "config": config,
            "seed": seed,
            "frames": frames_done,
            "train_seconds": train_s,
            "frames_per_second": frames_done / train_s,
            "stopped": stopped,
            # the first batch holds compilation and warm-up; the rest is the steady loop
            "first_batch_seconds": rows[0]["wall_s"] if rows else None,
            "steady_frames_per_second": _steady_rows_fps(rows),
            "import_seconds": import_s,
            "device": str(result["device"]) if result else cfg["device"],
            "threads": torch.get_num_threads(),
            "curve": curve,
            "overrides": list(overrides),
        }
        solved = next((p for p in curve if p["eval_return"] >= SOLVED), None)
        out["time_to_solve_s"] = solved["wall_s"] if solved else None
        out["frames_to_solve"] = solved["frames"] if solved else None
        if final_eval and result:
            policy = Path(tmp) / "policy.pt"
            from rl.core.checkpoint import save

            save(policy, {"actor": result["actor"].state_dict()})
            episodes = evaluate(cfg, seed, policy, stats)
            out["final_eval_returns"] = episodes["return"].tolist()
    print(json.dumps(out))


def _steady_rows_fps(rows: list[dict]) -> float | None:
    """Frames/s of the training loop after its first batch (compilation, warm-up), from the
    metric rows' cumulative frames and wall time (evaluations excluded)."""
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    return (last["frames"] - first["frames"]) / (last["wall_s"] - first["wall_s"])


# ----------------------------------------------------------------------------- driver
def engineering_speed(baseline: Path, frames: int, repeats: int, env_id: str, threads: int) -> dict:
    """Both sides get the same torch/OpenMP threads (set from outside for the baseline)."""
    rows = []
    for rep in range(repeats):
        pair = [
            (
                "ours",
                [
                    sys.executable,
                    __file__,
                    "worker",
                    "--config",
                    "configs/tutorial.yaml",
                    "--seed",
                    str(rep),
                    "--frames",
                    str(frames),
                    "--threads",
                    str(threads),
                ],
            ),
            ("tutorial", [sys.executable, str(baseline), str(frames), env_id, str(rep)]),
        ]
        for who, cmd in pair if rep % 2 == 0 else reversed(pair):
            res = run_json(cmd, timeout=3600, threads=threads)
            rows.append(
                {
                    "who": who,
                    "repeat": rep,
                    "fps": res["frames_per_second"],
                    "train_seconds": res["train_seconds"],
                    "steady_fps": _steady_fps(res),
                }
            )
            print(
                f"  engineering speed, repeat {rep}: {who:8s} {res['frames_per_second']:8.0f} "
                f"frames/s",
                flush=True,
            )
    ours = statistics.median(r["fps"] for r in rows if r["who"] == "ours")
    base = statistics.median(r["fps"] for r in rows if r["who"] == "tutorial")
    steady = [r["steady_fps"] for r in rows if r["who"] == "ours" and r["steady_fps"]]
    return {
        "frames": frames,
        "repeats": repeats,
        "threads": threads,
        "ours_fps_median": ours,
        "tutorial_fps_median": base,
        "ratio": ours / base,
        # after the first evaluation: warm-up and compilation excluded (the tutorial's
        # loop has none to exclude; its figure is its whole loop)
        "ours_steady_fps_median": statistics.median(steady) if steady else None,
        "steady_ratio": statistics.median(steady) / base if steady else None,
        "runs": rows,
    }


def _steady_fps(res: dict) -> float | None:
    """Frames/s between the first and the last evaluation of one of our runs."""
    curve = res.get("curve") or []
    if len(curve) < 2:
        return None
    first, last = curve[0], curve[-1]
    return (last["frames"] - first["frames"]) / (last["wall_s"] - first["wall_s"])


def time_to_solve(
    config: str, seeds: int, baseline: Path, env_id: str, threads: int, frames: int | None
) -> dict:
    """`frames`: the training budget (None: the config's ppo.total_frames; a learning-rate
    schedule stretches over it)."""
    limit = _limit(config, env_id)
    runs = []
    for seed in range(seeds):
        cmd = [sys.executable, __file__, "worker", "--config", config, "--seed", str(seed),
               "--threads", str(threads), "--final-eval"]  # fmt: skip
        if frames:
            cmd += ["--frames", str(frames)]
        res = run_json(cmd, timeout=3600, threads=threads)
        runs.append(res)
        print(
            f"  seed {seed}: solved at {res['time_to_solve_s']} s / {res['frames_to_solve']} "
            f"frames; {res['frames_per_second']:.0f} frames/s; final "
            f"{len(res['final_eval_returns'])} episodes min {min(res['final_eval_returns']):.0f}",
            flush=True,
        )
    solve_times = [r["time_to_solve_s"] for r in runs]
    budget = statistics.median(r["train_seconds"] for r in runs)
    # the tutorial gets the same wall-clock budget: frames it can do in that time
    probe = run_json(
        [sys.executable, str(baseline), "10000", env_id, "0"], timeout=3600, threads=threads
    )
    tut_frames = max(10000, int(budget * probe["frames_per_second"]) // 1000 * 1000)
    tutorial = run_json(
        [sys.executable, str(baseline), str(tut_frames), env_id, "0"], timeout=7200, threads=threads
    )
    return {
        "config": config,
        "seeds": seeds,
        "threads": threads,
        "budget_frames": runs[0]["frames"],
        "final_eval_min_per_seed": [min(r["final_eval_returns"]) for r in runs],
        "time_to_solve_s": solve_times,
        "time_to_solve_median_s": statistics.median(t for t in solve_times if t is not None)
        if all(t is not None for t in solve_times)
        else None,
        "all_solved": all(t is not None for t in solve_times),
        "stayed_solved": all(min(r["final_eval_returns"]) >= SOLVED for r in runs),
        "best_fps": max(r["frames_per_second"] for r in runs),
        "whole_run_fps_median": statistics.median(r["frames_per_second"] for r in runs),
        "physics_limit": limit,
        "physics_limit_fraction": statistics.median(r["frames_per_second"] for r in runs)
        / limit["physics_limit_frames_per_s"],
        "runs": runs,
        "tutorial_same_budget": tutorial,
    }


def _limit(config: str, env_id: str) -> dict:
    """The physics limit on the cores `config`'s training job reserves."""
    from rl.core import config as config_mod

    cores = config_mod.train_cores(config_mod.load(REPO / config))
    limit = physics_limit(env_id, cores)
    print(
        f"  physics limit: mj_step {limit['mj_step_substeps_per_s_one_core']:.0f} substeps/s "
        f"on one core = {limit['physics_limit_frames_per_s']:.0f} frames/s on {cores} cores",
        flush=True,
    )
    return limit


def quick_solve(config: str, env_id: str, threads: int) -> dict:
    """One seed of the best settings until its first deterministic 9,100 (or the end of its
    budget), beside the physics limit measured just before."""
    limit = _limit(config, env_id)
    cmd = [sys.executable, __file__, "worker", "--config", config, "--seed", "0",
           "--threads", str(threads), "--until-solved"]  # fmt: skip
    run = run_json(cmd, timeout=3600, threads=threads)
    fraction = run["frames_per_second"] / limit["physics_limit_frames_per_s"]
    print(
        f"  {config}: 9,100 at {run['time_to_solve_s']} s / {run['frames_to_solve']} frames; "
        f"{run['frames_per_second']:.0f} frames/s = {fraction:.1%} of the physics limit",
        flush=True,
    )
    return {"run": run, "physics_limit": limit, "physics_limit_fraction": fraction}


def pendulum_speed(seeds: list[int], baselines: Path) -> dict:
    """benchmarks/pendulum_bench.py (ours and the tutorial's pendulum, same run) for `seeds`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "benchmarks" / "pendulum_bench.py"), "--out", tmp]
        cmd += ["--baseline", str(baselines)]
        proc = subprocess.run(
            [*cmd, "--seeds", *map(str, seeds)], cwd=REPO, text=True, timeout=3600
        )
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode})")
        return json.loads((Path(tmp) / "pendulum-latest.json").read_text())


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    tts = result["time_to_solve"]
    for run in tts["runs"]:
        c = run["curve"]
        axes[0].plot(
            [p["wall_s"] for p in c],
            [p["eval_return"] for p in c],
            color="C0",
            alpha=0.6,
            label="ours" if run["seed"] == 0 else None,
        )
        axes[1].plot(
            [p["frames"] for p in c],
            [p["eval_return"] for p in c],
            color="C0",
            alpha=0.6,
            label="ours" if run["seed"] == 0 else None,
        )
    tut = tts["tutorial_same_budget"]
    axes[0].scatter(
        [tut["train_seconds"]],
        [tut["final_eval_return"]],
        color="C3",
        zorder=3,
        label="tutorial (final, same wall-clock budget)",
    )
    axes[1].scatter(
        [tut["total_frames"]],
        [tut["final_eval_return"]],
        color="C3",
        zorder=3,
        label="tutorial (final)",
    )
    for ax, xlabel in zip(
        axes, ("wall-clock seconds (training)", "environment frames"), strict=True
    ):
        ax.axhline(SOLVED, color="grey", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("deterministic evaluation return")
        ax.legend(fontsize="x-small", loc="lower right")
    fig.suptitle(f"InvertedDoublePendulum-v5: {tts['config']} vs the tutorial")
    fig.savefig(path.with_suffix(".png"), dpi=150)
    fig.savefig(path.with_suffix(".pdf"))


def _solve_keys(tts: dict) -> dict:
    """latest.json's keys of a time-to-solve run (full and solve modes)."""
    return {
        "ppo_best_fps": tts["best_fps"],
        "ppo_time_to_solve_median_s": tts["time_to_solve_median_s"],
        "physics_limit_frames_per_s": tts["physics_limit"]["physics_limit_frames_per_s"],
        "physics_limit_fraction": tts["physics_limit_fraction"],
    }


def _history_name(result: dict, mode: str) -> str:
    """<UTC time>-<mode>-<cpu|gpu>: a history file's name (without suffix)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{mode}-{'gpu' if result['machine']['cuda'] else 'cpu'}"


def update_latest(path: Path, tts: dict, source: str) -> None:
    """The time-to-solve keys of latest.json from a solve run (the others stay)."""
    latest = json.loads(path.read_text()) if path.exists() else {}
    latest.update(_solve_keys(tts))
    latest["ppo_time_to_solve_config"] = tts["config"]
    latest["ppo_time_to_solve_source"] = source
    path.write_text(json.dumps(latest, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--config", required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--frames", type=int)
    w.add_argument("--threads", type=int)
    w.add_argument("--final-eval", action="store_true")
    w.add_argument("--set", action="append", default=[], help="section.key=value override")
    w.add_argument("--until-solved", action="store_true", help="stop at the first >= 9,100")
    w.add_argument("--max-seconds", type=float, help="stop after this much training")
    for name in ("quick", "full", "solve"):
        p = sub.add_parser(name)
        p.add_argument("--baseline", help="tutorial_ppo.py or its folder")
        p.add_argument("--env-id", default="InvertedDoublePendulum-v5")
        p.add_argument("--frames", type=int, default=20000 if name == "quick" else 50000)
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument(
            "--threads", type=int, default=1, help="torch/OpenMP threads, both sides alike"
        )
        p.add_argument("--config", default="configs/fast.yaml", help="the best settings")
        p.add_argument("--seeds", type=int, default=5)
        p.add_argument(
            "--budget-frames", type=int, help="full: training frames per seed (default: config's)"
        )
        p.add_argument("--out", default=str(HISTORY))
        p.add_argument(
            "--pendulum-seeds", type=int, nargs="+", default=[0] if name == "quick" else [0, 1, 2]
        )
    args = parser.parse_args()
    if args.mode == "worker":
        return worker(
            args.config,
            args.seed,
            args.frames,
            args.threads,
            args.final_eval,
            args.set,
            args.until_solved,
            args.max_seconds,
        )

    baseline = baseline_path(args.baseline, "tutorial_ppo.py")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "mode": args.mode, "env_id": args.env_id}
    if args.mode == "solve":  # the full mode's time-to-solve alone; latest.json's keys of it
        result["time_to_solve"] = t = time_to_solve(
            args.config, args.seeds, baseline, args.env_id, args.threads, args.budget_frames
        )
        name = _history_name(result, f"solve-{Path(args.config).stem}")
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
        figure(result, out_dir / name)
        update_latest(out_dir / "latest.json", t, f"{name}.json")
        print(
            f"time to 9,100: {t['time_to_solve_s']} s (median {t['time_to_solve_median_s']}); "
            f"best {t['best_fps']:.0f} frames/s; final minima {t['final_eval_min_per_seed']}; "
            f"{t['physics_limit_fraction']:.1%} of the physics limit "
            f"({t['physics_limit']['physics_limit_frames_per_s']:.0f} frames/s)"
        )
        print(f"wrote {out_dir / name}.json and .png")
        return
    name = _history_name(result, args.mode)

    def save() -> None:  # after every part: a later part's failure loses nothing before it
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))

    print(f"engineering speed: {args.frames} frames x {args.repeats} repeats each", flush=True)
    result["engineering_speed"] = engineering_speed(
        baseline, args.frames, args.repeats, args.env_id, args.threads
    )
    latest = {
        "ppo_engineering_speed_ratio": result["engineering_speed"]["ratio"],
        "ppo_engineering_speed_ratio_steady": result["engineering_speed"]["steady_ratio"],
        "ppo_ours_fps_tutorial_settings": result["engineering_speed"]["ours_fps_median"],
        "ppo_tutorial_fps": result["engineering_speed"]["tutorial_fps_median"],
    }
    if args.mode == "quick":
        # the best settings, one seed to its first 9,100, beside the physics limit
        result["best_settings_speed"] = q = quick_solve(args.config, args.env_id, args.threads)
        latest["ppo_best_fps"] = q["run"]["frames_per_second"]
        latest["ppo_time_to_solve_one_seed_s"] = q["run"]["time_to_solve_s"]
        latest["physics_limit_frames_per_s"] = q["physics_limit"]["physics_limit_frames_per_s"]
        latest["physics_limit_fraction"] = q["physics_limit_fraction"]
    save()
    if args.mode == "full":
        print(f"time to solve: {args.config}, {args.seeds} seeds", flush=True)
        result["time_to_solve"] = time_to_solve(
            args.config, args.seeds, baseline, args.env_id, args.threads, args.budget_frames
        )
        latest.update(_solve_keys(result["time_to_solve"]))
        save()
    print(f"pendulum: {len(args.pendulum_seeds)} seed(s), ours beside the tutorial", flush=True)
    result["pendulum"] = pendulum_speed(args.pendulum_seeds, baseline.parent)
    p = result["pendulum"]["summary"]
    latest["pendulum_speed_ratio"] = p["speedup_after_first"]
    latest["pendulum_speed_ratio_including_compile"] = p["speedup_including_first"]
    latest["pendulum_final_step_reward"] = p["ours_final_step_reward_last10"]
    result["latest"] = latest
    save()
    (out_dir / "latest.json").write_text(json.dumps({**latest, "raw": result}, indent=1))
    if args.mode == "full":
        figure(result, out_dir / name)
    es = result["engineering_speed"]
    print("\n| measure | ours | tutorial | ratio |\n|---|---|---|---|")
    print(
        f"| frames/s, tutorial hyper-parameters (median of {es['repeats']}) | "
        f"{es['ours_fps_median']:.0f} | {es['tutorial_fps_median']:.0f} | {es['ratio']:.2f}x |"
    )
    if es["steady_ratio"]:
        print(
            f"| same, after our first evaluation (compilation and warm-up done) | "
            f"{es['ours_steady_fps_median']:.0f} | | {es['steady_ratio']:.2f}x |"
        )
    if args.mode == "full":
        t = result["time_to_solve"]
        print(
            f"| time to 9,100 (median s, {t['seeds']} seeds) | {t['time_to_solve_median_s']} "
            f"| never in its budget: final {t['tutorial_same_budget']['final_eval_return']:.0f} "
            f"| |"
        )
        print(f"| best frames/s | {t['best_fps']:.0f} | | |")
    if "physics_limit_fraction" in latest:
        print(
            f"| whole-run frames/s over the physics limit "
            f"({latest['physics_limit_frames_per_s']:.0f} frames/s) | "
            f"{latest['physics_limit_fraction']:.1%} | | |"
        )
    print(f"\nwrote {out_dir / name}.json and latest.json")


if __name__ == "__main__":
    main()
