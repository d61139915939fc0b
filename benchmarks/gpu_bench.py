"""The GPU check's measurements (benchmarks/gpu_check.sh runs it after the GPU tests):
frames/s and time to a deterministic evaluation >= 9,100, >= 3 seeds each, of

  gpu        configs/gpu.yaml: mujoco-warp on the GPU, compiled and CUDA-graphed;
  fast-cuda  configs/fast.yaml with device: cuda (CPU MuJoCo, networks on the GPU);
  fast-cpu   configs/fast.yaml with device: cpu on the same machine (the baseline of the
             "device: cuda no slower than the CPU" target);
  physics    benchmarks/warp_bench.py: mujoco-warp's physics alone at 1,024-16,384 worlds.

Each run stops at its first evaluation >= 9,100 (or at its cap) and reports its whole
frames/s, the steady frames/s after its first batch, and that first batch's seconds
(compilation included). The gpu runs go one after another (one GPU); the fast ones, whose
time is the CPU's, side by side, each pair the same way. A deadline cuts what does not fit
(recorded as skipped). `--device cpu`: the rehearsal on a CPU, every step at a tiny size.

    python benchmarks/gpu_bench.py --device cuda --deadline-s 300 --out benchmarks/history
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

from benchlib import REPO, json_tail, machine

# --set overrides per case and device; the cpu rows are the rehearsal's tiny sizes
TINY_WARP = ["env.num_envs=64", "ppo.frames_per_batch=1024", "ppo.minibatch_size=256"]
TINY_WARP += ["ppo.total_frames=8192", "ppo.eval_interval_frames=4096", "obs_norm.steps=500"]
TINY_FAST = ["ppo.total_frames=16384", "ppo.eval_interval_frames=8192", "obs_norm.steps=500"]
CASES = {
    # name: (config, overrides on cuda, overrides on cpu, cap seconds, side by side)
    "gpu": ("configs/gpu.yaml", [], ["device=cpu", *TINY_WARP], 90, False),
    "fast-cuda": ("configs/fast.yaml", ["device=cuda"], ["device=cpu", *TINY_FAST], 60, True),
    "fast-cpu": ("configs/fast.yaml", ["device=cpu"], ["device=cpu", *TINY_FAST], 60, True),
}
START_SLACK_S = 150  # imports, statistics, warp's kernels, compilation: beyond the cap


def _worker(config: str, seed: int, sets: list[str], cap: float) -> list[str]:
    cmd = [sys.executable, str(REPO / "benchmarks" / "ppo_bench.py"), "worker"]
    cmd += ["--config", config, "--seed", str(seed), "--until-solved", "--max-seconds", str(cap)]
    cmd += ["--threads", "1"]  # one torch thread a run, as every CPU benchmark here
    return cmd + [a for s in sets for a in ("--set", s)] + ["--set", "mlflow.enabled=false"]


def run_case(name: str, device: str, seeds: int, deadline: float) -> dict:
    config, on_cuda, on_cpu, cap, parallel = CASES[name]
    sets = on_cuda if device == "cuda" else on_cpu
    started, runs = time.monotonic(), []
    batches = [list(range(seeds))] if parallel else [[s] for s in range(seeds)]
    for group in batches:
        left = deadline - time.monotonic()
        if left < 30:
            runs += [{"seed": s, "skipped": "deadline"} for s in group]
            continue
        procs = [
            (s, subprocess.Popen(_worker(config, s, sets, cap), cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            for s in group
        ]  # fmt: skip
        for seed, proc in procs:
            try:
                out, err = proc.communicate(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                runs.append({"seed": seed, "skipped": "deadline (killed)", "stderr": err[-2000:]})
                continue
            done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            try:
                runs.append(json_tail(done) if proc.returncode == 0 else {"error": err[-3000:]})
                runs[-1]["seed"] = seed
            except RuntimeError as exc:
                runs.append({"seed": seed, "error": str(exc)[-3000:]})
            print(f"  {name} seed {seed}: {_line(runs[-1])}", flush=True)
    return {"config": config, "overrides": sets, "cap_s": cap, "side_by_side": parallel,
            "seconds": time.monotonic() - started, "runs": runs, **summary(runs)}  # fmt: skip


def _line(run: dict) -> str:
    if "frames" not in run:
        return run.get("skipped") or "error: " + run.get("error", "?")[-300:]
    solve, steady = run["time_to_solve_s"], run["steady_frames_per_second"] or 0
    return (
        f"{run['frames_per_second']:,.0f} frames/s, steady {steady:,.0f}, first batch "
        f"{run['first_batch_seconds'] or 0:.1f} s, "
        + (f"9,100 at {solve:.1f} s / {run['frames_to_solve']:,} frames" if solve else "not solved")
    )


def summary(runs: list[dict]) -> dict:
    done = [r for r in runs if "frames" in r]
    med = lambda k: statistics.median(v) if (v := [r[k] for r in done if r.get(k)]) else None  # noqa: E731
    solved = [r["time_to_solve_s"] for r in done if r["time_to_solve_s"] is not None]
    return {
        "seeds_done": len(done),
        "seeds_solved": len(solved),
        "frames_per_second_median": med("frames_per_second"),
        "steady_frames_per_second_median": med("steady_frames_per_second"),
        "first_batch_seconds_median": med("first_batch_seconds"),
        # median over the seeds done; an unsolved seed counts as not solved in time
        "time_to_solve_median_s": statistics.median(solved)
        if done and len(solved) * 2 > len(done)
        else None,
    }


def physics(device: str, deadline: float) -> dict:
    left = deadline - time.monotonic()
    if left < 40:
        return {"skipped": "deadline"}
    worlds = ["1024", "4096", "16384"] if device == "cuda" else ["64", "256"]
    cmd = [sys.executable, str(REPO / "benchmarks" / "warp_bench.py"), "--device", device]
    cmd += ["--worlds", *worlds, "--repeats", "2", "--steps", "20", "--out", "/tmp"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        return {"skipped": "deadline (killed)"}
    if proc.returncode:
        return {"error": proc.stderr[-3000:]}
    return json.loads(Path(proc.stdout.strip().splitlines()[-1].split("wrote ")[1]).read_text())


def targets(result: dict) -> dict:
    """The GPU targets' verdicts (None: not measured); a CPU rehearsal judges none."""
    if result["device"] != "cuda":
        return {"note": "a CPU rehearsal: the GPU targets are not judged"}
    gpu, cuda, cpu = (result["cases"].get(k, {}) for k in ("gpu", "fast-cuda", "fast-cpu"))
    steady, solve = gpu.get("steady_frames_per_second_median"), gpu.get("time_to_solve_median_s")
    fast_cuda, fast_cpu = cuda.get("frames_per_second_median"), cpu.get("frames_per_second_median")
    return {
        "gpu_steady_fps_ge_300k": None if steady is None else steady >= 300_000,
        "gpu_time_to_solve_le_10s": None if solve is None else solve <= 10,
        "cuda_cpu_mujoco_not_slower": None
        if not (fast_cuda and fast_cpu)
        else fast_cuda >= fast_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--deadline-s", type=float, default=330)
    parser.add_argument("--cases", nargs="+", default=[*CASES, "physics"])
    parser.add_argument("--extra", type=Path, help="a JSON file merged in (the tests' result)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "history")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline_s
    result = {"machine": machine(), "device": args.device, "seeds": args.seeds, "cases": {}}
    if args.device == "cpu":
        result["note"] = "rehearsal on a CPU at tiny sizes: GPU not measured: no GPU available"
    for name in [c for c in args.cases if c in CASES]:
        print(f"{name}: {CASES[name][0]}", flush=True)
        result["cases"][name] = run_case(name, args.device, args.seeds, deadline)
    if "physics" in args.cases:
        result["physics"] = physics(args.device, deadline)
    result["targets"] = targets(result)
    if args.extra and args.extra.is_file():
        result |= json.loads(args.extra.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.out / f"{stamp}-gpu-check-{args.device}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("cases", "machine")}))
    for name, case in result["cases"].items():
        keys = ("frames_per_second_median", "steady_frames_per_second_median")
        keys += ("first_batch_seconds_median", "time_to_solve_median_s", "seeds_solved")
        print(name, {k: case[k] for k in keys})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
