"""The PPO study's verbs: obs-norm-stats, train-ppo, evaluate-ppo (one rule each)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rl.core.files import read_json, write_csv, write_json
from rl.runner import Arg, Job, stage
from rl.tracking.sync import episode_rows, read_csv, table_rows

log = logging.getLogger("rl")


@stage(
    "obs_norm_stats",
    "observation loc/scale from random-policy steps",
    Arg("--out", required=True, help="statistics JSON"),
    artifacts=("stats.json", "provenance.json"),
)
def obs_norm_stats(job: Job) -> None:
    cfg, args = job.cfg, job.args
    stats = norm_stats(cfg, args.seed)
    write_json(args.out, stats)
    job.finish(Path(args.out).parent)
    log.info("observation statistics from %d random steps -> %s", stats["count"], args.out)


def norm_stats(cfg: dict, seed: int) -> dict:
    """The observation statistics of a run (the identity with obs_norm.enabled false)."""
    from rl.ppo.envs import observation_stats

    stats = observation_stats(cfg["env"], cfg["obs_norm"]["steps"], seed)
    if not cfg["obs_norm"]["enabled"]:
        stats["loc"] = [0.0] * len(stats["loc"])
        stats["scale"] = [1.0] * len(stats["scale"])
        stats["identity"] = True
    return stats


def read_obs_stats(path: str, cfg: dict) -> dict:
    stats = read_json(path, "observation statistics")
    if stats.get("env_id") != cfg["env"]["id"]:
        raise ValueError(
            f"Observation statistics '{path}' were computed on {stats.get('env_id')} "
            f"but the config trains on {cfg['env']['id']}. Rerun obs_norm_stats."
        )
    return stats


def train_ppo_rows(folder: Path) -> list[tuple[int, dict]]:
    """The metric rows of a train_ppo folder: every batch, and the in-training evaluations."""
    rows = table_rows(read_csv(folder / "train_metrics.csv"), "frames")
    evals = read_csv(folder / "train_eval.csv")[["frames", "eval_return", "eval_episode_length"]]
    return rows + table_rows(evals, "frames")


def log_synced_policy(run, cfg: dict, folder: Path, variant: str, seed: int) -> None:
    """mlflow-sync of a train_ppo folder: the policy model, as the job logged it."""
    from rl.core import layout
    from rl.ppo.envs import make_env
    from rl.ppo.evaluate import load_actor
    from rl.ppo.models import exportable_policy

    if not (folder / "policy.pt").is_file():
        return
    stats_path = layout.outputs(cfg)["obs_norm"].format(variant=variant, seed=seed)
    stats = read_json(stats_path, "observation statistics")
    env, _ = make_env(cfg["env"], seed, num_envs=1, obs_stats=stats)
    actor, _ = load_actor(cfg, folder / "policy.pt", "cpu", env)
    env.close()
    run.log_model(*exportable_policy(actor, stats))


@stage(
    "train_ppo",
    "train PPO for one seed (resumes from a checkpoint)",
    Arg("--obs-stats", required=True, help="statistics JSON from obs-norm-stats"),
    Arg("--out-dir", required=True, help="folder for weights, tables, checkpoint"),
    artifacts=("train_metrics.csv", "train_eval.csv", "provenance.json"),
    rows=train_ppo_rows,
    on_sync=log_synced_policy,
)
def train_ppo(job: Job) -> None:
    import pandas as pd

    from rl.core import snapshots
    from rl.core.checkpoint import save
    from rl.core.device import resolve_device
    from rl.ppo.models import exportable_policy
    from rl.ppo.train import train

    cfg, args = job.cfg, job.args
    stats = read_obs_stats(args.obs_stats, cfg)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with job.tracked(job.record(device=str(resolve_device(cfg["device"])))) as run:

        def on_batch(row, eval_row):
            run.log_metrics({k: v for k, v in row.items() if k != "batch"}, row["frames"])
            if eval_row:
                run.log_metrics(eval_row, eval_row["frames"])

        every = snapshots.every(cfg)
        result = train(cfg, args.seed, stats, out, on_batch=on_batch, snapshot_every=every)
        state, actor = result["state"], result["actor"]
        tag = {"variant": args.variant, "seed": args.seed}
        weights = {"actor": actor.state_dict(), "critic": result["critic"].state_dict()}
        weights["optim"] = result["optim"].state_dict()
        weights["obs_stats"] = {"loc": stats["loc"], "scale": stats["scale"]}
        save(out / "policy.pt", weights | {"frames": state["frames"]})
        write_csv(out / "train_metrics.csv", pd.DataFrame(state["metrics"]).assign(**tag))
        write_csv(out / "train_eval.csv", pd.DataFrame(state["eval"]).assign(**tag))
        if every:
            obs = weights["obs_stats"]
            snapshots.write(out / snapshots.FILE, snapshots.PPO, state["snapshots"], obs_stats=obs)
        done = {"frames": state["frames"], "train_wall_s": state["wall_s"]}
        job.write_provenance(out, device=str(result["device"]), extra=done)
        run.log_artifacts(job.stage.artifact_files(out))
        run.log_model(*exportable_policy(actor, stats))
        result["checkpoint"].unlink(missing_ok=True)
    last = state["eval"][-1] if state["eval"] else {}
    log.info(
        "trained %d frames in %.0fs; last evaluation return %.1f",
        state["frames"],
        state["wall_s"],
        last.get("eval_return", float("nan")),
    )


def _unless_skipped(cfg, step, *args):
    """Run a rendering step; with video.on_error: skip, a renderer that cannot work is a
    warning (returned as the reason) instead of failing the job."""
    from rl.analysis.video import RenderUnavailable

    try:
        return step(*args), None
    except RenderUnavailable as exc:
        if cfg["video"]["on_error"] != "skip":
            raise
        log.warning("no evaluation videos (video.on_error: skip): %s", exc)
        return None, str(exc)


def _episode_videos(job: Job, episodes, stats: dict, skipped: str | None) -> None:
    """Render, caption and write the first and the worst evaluation episode, and
    videos.json (with the reason when they were skipped)."""
    from rl.analysis.video import episode_video_paths, write_episode_videos
    from rl.ppo.evaluate import record_episodes

    cfg, args, vcfg = job.cfg, job.args, job.cfg["video"]
    manifest = {"mujoco_gl": os.environ.get("MUJOCO_GL"), "on_error": vcfg["on_error"]}
    if skipped is None:

        def record():
            recordings = record_episodes(cfg, args.seed, args.policy, stats, episodes)
            title = f"{cfg['env']['id']}, seed {args.seed}"
            return write_episode_videos(recordings, args.video_dir, vcfg, title)

        manifest["videos"], skipped = _unless_skipped(cfg, record)
    if skipped is not None:
        manifest.pop("videos", None)
        manifest["skipped"] = skipped
    write_json(episode_video_paths(args.video_dir)["manifest"], manifest)
    for name, row in manifest.get("videos", {}).items():
        log.info(
            "video of the %s episode (%d, return %.1f): %d frames, %.1f ms/frame to render, "
            "%.1f s to encode; %s %d bytes, %s %d bytes",
            *(name, row["episode"], row["return"], row["frames"], row["render_ms_per_frame"]),
            *(row["encode_s"], row["mp4"], row["mp4_bytes"], row["gif"], row["gif_bytes"]),
        )


@stage(
    "evaluate_ppo",
    "deterministic episodes of a trained policy",
    Arg("--policy", required=True, help="policy.pt from train-ppo"),
    Arg("--obs-stats", required=True),
    Arg("--episodes-out", required=True, help="CSV, one row per episode"),
    Arg("--summary-out", required=True, help="JSON summary"),
    Arg("--video-dir", help="folder for the first and worst episodes' videos (video.enabled)"),
    artifacts=("episodes.csv", "summary.json", "provenance.json", "videos.json", "episode-*.mp4")
    + ("episode-*.gif",),
    rows=lambda folder: episode_rows(read_csv(folder / "episodes.csv")),
)
def evaluate_ppo(job: Job) -> None:
    from rl.core.device import resolve_device

    cfg, args = job.cfg, job.args
    record = cfg["video"]["enabled"] and args.video_dir is not None
    skipped = None
    if record:
        from rl.analysis.video import configure_gl

        configure_gl(cfg["video"])  # before anything imports mujoco
        from rl.ppo.evaluate import check_rendering

        _, skipped = _unless_skipped(cfg, check_rendering, cfg)  # fail before evaluating
    from rl.ppo.evaluate import evaluate, summarise

    stats = read_json(args.obs_stats, "observation statistics")
    episodes = evaluate(cfg, args.seed, args.policy, stats)
    episodes = episodes.assign(variant=args.variant, seed=args.seed)
    summary = summarise(episodes) | {"variant": args.variant, "seed": args.seed}
    if record:
        _episode_videos(job, episodes, stats, skipped)
    write_csv(args.episodes_out, episodes)
    write_json(args.summary_out, summary)
    device = str(resolve_device(cfg["device"]))
    job.finish(Path(args.episodes_out).parent, rows=episode_rows(episodes), device=device)
    log.info(
        "evaluation over %d episodes: return %.1f +- %.1f, length %.0f",
        summary["episodes"],
        summary["return_mean"],
        summary["return_std"],
        summary["length_mean"],
    )


STAGES = (obs_norm_stats, train_ppo, evaluate_ppo)
