"""The pendulum study's verbs: train-pendulum and animate-pendulum (one rule each)."""

from __future__ import annotations

import logging
from pathlib import Path

from rl.core.files import write_csv, write_json
from rl.runner import Arg, Job, stage
from rl.tracking.sync import read_csv, table_rows

log = logging.getLogger("rl")


@stage(
    "train_pendulum",
    "train the pendulum controller through the simulator for one seed (resumable)",
    Arg("--out-dir", required=True, help="folder for weights, tables, checkpoint"),
    artifacts=("train_metrics.csv", "eval_trajectories.csv", "provenance.json"),
    rows=lambda folder: table_rows(read_csv(folder / "train_metrics.csv"), "frames"),
)
def train_pendulum(job: Job) -> None:
    import pandas as pd

    from rl.core import snapshots
    from rl.core.checkpoint import save
    from rl.core.device import resolve_device
    from rl.pendulum.train import evaluate_controller, train

    cfg, args = job.cfg, job.args
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with job.tracked(job.record(device=str(resolve_device(cfg["pendulum"]["device"])))) as run:

        def on_iteration(row):
            run.log_metrics({k: v for k, v in row.items() if k != "iteration"}, row["frames"])

        every = snapshots.every(cfg)
        result = train(cfg, args.seed, out, on_iteration=on_iteration, snapshot_every=every)
        state = result["state"]
        tag = {"variant": args.variant, "seed": args.seed}
        metrics = pd.DataFrame(state["rows"]).assign(**tag)
        evals = evaluate_controller(cfg, result["policy"], result["device"]).assign(**tag)
        done = {"iterations": state["iteration"], "train_wall_s": state["wall_s"]}
        save(out / "policy.pt", {"policy": result["policy"].state_dict(), **done})
        write_csv(out / "train_metrics.csv", metrics)
        write_csv(out / "eval_trajectories.csv", evals)
        if every:
            snapshots.write(out / snapshots.FILE, snapshots.BPTT, state["snapshots"])
        last10 = float(metrics["final_step_reward"].tail(10).mean())
        extra = {**done, "final_step_reward_last10": last10}
        job.write_provenance(out, device=str(result["device"]), extra=extra)
        run.log_artifacts(job.stage.artifact_files(out))
        result["checkpoint"].unlink(missing_ok=True)
    log.info(
        "trained %d iterations in %.0fs (median %.1f it/s); final-step reward, mean of the "
        "last 10 iterations: %.4f",
        state["iteration"],
        state["wall_s"],
        metrics["iters_per_s"].median(),
        last10,
    )


def read_trajectories(path: Path, seed: int):
    """One seed's eval_trajectories.csv, or an error naming the rule that makes it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing pendulum trajectories '{path}'. Run the train_pendulum rule for seed "
            f"{seed} (snakemake --cores N '{path}') or pass the right path."
        )
    evals = read_csv(path)
    if "seed" in evals.columns and set(evals["seed"]) != {seed}:
        raise ValueError(
            f"'{path}' holds the trajectories of seed(s) {sorted(set(evals['seed']))}, not "
            f"--seed {seed}. Pass that seed's eval_trajectories.csv."
        )
    return evals


@stage(
    "animate_pendulum",
    "MP4 and GIF of one seed's learned pendulum controller",
    Arg("--trajectories", required=True, help="eval_trajectories.csv of the seed"),
    Arg("--mp4", required=True),
    Arg("--gif", required=True),
    artifacts=("animation.*", "provenance.json"),
)
def animate_pendulum(job: Job) -> None:
    from rl.analysis.video import animate_pendulum

    cfg, args = job.cfg, job.args
    evals = read_trajectories(Path(args.trajectories), args.seed)
    title = f"Pendulum controller, seed {args.seed} ({cfg['study']})"
    physics = cfg["pendulum"]["physics"]
    row = animate_pendulum(evals, physics, cfg["video"], args.mp4, args.gif, title)
    out = Path(args.mp4).parent
    write_json(out / "animation.json", row)
    job.finish(out)
    log.info(
        "pendulum animation: %d starts, %d frames in %.1f s; %s %d bytes, %s %d bytes",
        *(row["starts"], row["frames"], row["mp4_s"]),
        *(args.mp4, row["mp4_bytes"], args.gif, row["gif_bytes"]),
    )


STAGES = (train_pendulum, animate_pendulum)
