"""`python -m rl <verb>`: every workflow rule is one of these lines, runnable by hand."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rl.core import config as config_mod
from rl.core import layout

log = logging.getLogger("rl")


def _common(p: argparse.ArgumentParser, seed: bool = False) -> None:
    p.add_argument("--config", required=True, help="study YAML (validated, defaults filled)")
    if seed:
        p.add_argument("--seed", type=int, required=True, help="one of the config's seeds")
        p.add_argument("--variant", default=layout.DEFAULT_VARIANT, help="variant name")
    p.add_argument("--threads", type=int, default=None, help="torch threads (Snakemake's threads)")


def _setup(args) -> dict:
    """The validated config of the verb: with --variant, that variant's resolved config."""
    cfg = config_mod.load(args.config)
    # By hand as by the workflow: never write into a study made by a different config.
    config_mod.check_same_study(cfg, layout.outputs(cfg)["config"])
    if getattr(args, "variant", None) is not None:
        cfg = config_mod.variant_config(cfg, args.variant, source=args.config)
    if getattr(args, "seed", None) is not None and args.seed not in cfg["seeds"]:
        raise config_mod.ConfigError(
            f"--seed {args.seed} is not among the config's seeds {cfg['seeds']} "
            f"({args.config}). Add it to the key 'seeds' or pick one of those."
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return cfg


def cmd_validate_config(args) -> None:
    from rl.core.files import write_text

    cfg = config_mod.load(args.config)
    if args.write:
        write_text(args.write, config_mod.dump(cfg))
    print(f"{args.config}: valid (config hash {config_mod.config_hash(cfg)})")


def cmd_mlflow_init(args) -> None:
    from rl.tracking import run as tracking

    cfg = _setup(args)
    info = tracking.init_store(cfg, cfg["seeds"], config_mod.variant_names(cfg), args.marker)
    log.info(
        "MLflow store %s, experiment '%s' (%s)",
        info["tracking_uri"],
        info["experiment"],
        info["experiment_id"],
    )


def cmd_obs_norm_stats(args) -> None:
    from rl.core import provenance
    from rl.core.files import write_json
    from rl.ppo.envs import observation_stats

    cfg = _setup(args)
    started = datetime.now(UTC)
    stats = observation_stats(cfg["env"], cfg["obs_norm"]["steps"], args.seed)
    if not cfg["obs_norm"]["enabled"]:
        stats["loc"] = [0.0] * len(stats["loc"])
        stats["scale"] = [1.0] * len(stats["scale"])
        stats["identity"] = True
    write_json(args.out, stats)
    prov = provenance.write(
        Path(args.out).parent,
        cfg,
        stage="obs_norm_stats",
        seed=args.seed,
        variant=args.variant,
        started=started,
    )
    _track(
        cfg,
        args,
        "obs_norm_stats",
        prov,
        artifacts=[args.out, Path(args.out).parent / "provenance.json"],
    )
    log.info("observation statistics from %d random steps -> %s", stats["count"], args.out)


def _track(cfg, args, stage, prov, artifacts=(), rows=None):
    from rl.tracking.run import StageRun

    with StageRun(
        cfg,
        args.mlflow_marker,
        stage,
        prov,
        getattr(args, "seed", None),
        getattr(args, "variant", layout.DEFAULT_VARIANT),
        config_path=args.config,
    ) as run:
        for step, row in rows or []:
            run.log_metrics(row, step)
        run.log_artifacts(list(artifacts))


def cmd_train_ppo(args) -> None:
    import pandas as pd

    from rl.core import provenance
    from rl.core.checkpoint import save
    from rl.core.files import read_json, write_csv
    from rl.ppo.train import train
    from rl.tracking.run import StageRun

    cfg = _setup(args)
    started = datetime.now(UTC)
    stats = read_json(args.obs_stats, "observation statistics")
    if stats.get("env_id") != cfg["env"]["id"]:
        raise ValueError(
            f"Observation statistics '{args.obs_stats}' were computed on {stats.get('env_id')} "
            f"but the config trains on {cfg['env']['id']}. Rerun obs_norm_stats."
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device_name = cfg["device"]
    prov = provenance.record(
        cfg,
        stage="train_ppo",
        seed=args.seed,
        variant=args.variant,
        device=str(_device(device_name)),
        started=started,
    )
    with StageRun(
        cfg, args.mlflow_marker, "train_ppo", prov, args.seed, args.variant, config_path=args.config
    ) as run:

        def on_batch(row, eval_row):
            run.log_metrics({k: v for k, v in row.items() if k != "batch"}, row["frames"])
            if eval_row:
                run.log_metrics(eval_row, eval_row["frames"])

        result = train(cfg, args.seed, stats, out, on_batch=on_batch)
        state = result["state"]
        tag = {"variant": args.variant, "seed": args.seed}
        metrics = pd.DataFrame(state["metrics"]).assign(**tag)
        evals = pd.DataFrame(state["eval"]).assign(**tag)
        save(
            out / "policy.pt",
            {
                "actor": result["actor"].state_dict(),
                "critic": result["critic"].state_dict(),
                "optim": result["optim"].state_dict(),
                "obs_stats": {"loc": stats["loc"], "scale": stats["scale"]},
                "frames": state["frames"],
            },
        )
        write_csv(out / "train_metrics.csv", metrics)
        write_csv(out / "train_eval.csv", evals)
        prov = provenance.write(
            out,
            cfg,
            stage="train_ppo",
            seed=args.seed,
            variant=args.variant,
            device=str(result["device"]),
            started=started,
            extra={"frames": state["frames"], "train_wall_s": state["wall_s"]},
        )
        run.log_artifacts(
            [out / "train_metrics.csv", out / "train_eval.csv", out / "provenance.json"]
        )
        run.log_policy(result["actor"], stats)
        result["checkpoint"].unlink(missing_ok=True)
    last = state["eval"][-1] if state["eval"] else {}
    log.info(
        "trained %d frames in %.0fs; last evaluation return %.1f",
        state["frames"],
        state["wall_s"],
        last.get("eval_return", float("nan")),
    )


def _device(name: str):
    from rl.ppo.train import resolve_device

    return resolve_device(name)


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


def _episode_videos(cfg, args, episodes, stats: dict, skipped: str | None) -> list[Path]:
    """Render, caption and write the first and the worst evaluation episode; returns the
    files written (videos.json always, with the reason when they were skipped)."""
    from rl.analysis.video import episode_video_paths, write_episode_videos
    from rl.core.files import write_json
    from rl.ppo.evaluate import record_episodes

    vcfg = cfg["video"]
    paths = episode_video_paths(args.video_dir)
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
    write_json(paths["manifest"], manifest)
    for name, row in manifest.get("videos", {}).items():
        log.info(
            "video of the %s episode (%d, return %.1f): %d frames, %.1f ms/frame to render, "
            "%.1f s to encode; %s %d bytes, %s %d bytes",
            name,
            row["episode"],
            row["return"],
            row["frames"],
            row["render_ms_per_frame"],
            row["encode_s"],
            row["mp4"],
            row["mp4_bytes"],
            row["gif"],
            row["gif_bytes"],
        )
    return [p for p in paths.values() if p.is_file()]


def cmd_evaluate_ppo(args) -> None:
    from rl.core import provenance

    cfg = _setup(args)
    started = datetime.now(UTC)
    record = cfg["video"]["enabled"] and args.video_dir is not None
    skipped = None
    if record:
        from rl.analysis.video import configure_gl

        configure_gl(cfg["video"])  # before anything imports mujoco
        from rl.ppo.evaluate import check_rendering

        _, skipped = _unless_skipped(cfg, check_rendering, cfg)  # fail before evaluating
    from rl.core.files import read_json, write_csv, write_json
    from rl.ppo.evaluate import evaluate, summarise
    from rl.tracking.sync import episode_rows

    stats = read_json(args.obs_stats, "observation statistics")
    episodes = evaluate(cfg, args.seed, args.policy, stats)
    episodes = episodes.assign(variant=args.variant, seed=args.seed)
    summary = summarise(episodes) | {"variant": args.variant, "seed": args.seed}
    videos = []
    if record:
        videos = _episode_videos(cfg, args, episodes, stats, skipped)
    write_csv(args.episodes_out, episodes)
    write_json(args.summary_out, summary)
    prov = provenance.write(
        Path(args.episodes_out).parent,
        cfg,
        stage="evaluate_ppo",
        seed=args.seed,
        variant=args.variant,
        device=str(_device(cfg["device"])),
        started=started,
    )
    _track(
        cfg,
        args,
        "evaluate_ppo",
        prov,
        rows=episode_rows(episodes),
        artifacts=[
            args.episodes_out,
            args.summary_out,
            Path(args.episodes_out).parent / "provenance.json",
            *videos,
        ],
    )
    log.info(
        "evaluation over %d episodes: return %.1f +- %.1f, length %.0f",
        summary["episodes"],
        summary["return_mean"],
        summary["return_std"],
        summary["length_mean"],
    )


PPO_TIDY = {
    # file stem -> the columns every per-seed table must have
    "ppo_train": ["variant", "seed", "frames", "train_reward_mean"],
    "ppo_train_eval": ["variant", "seed", "frames", "eval_return"],
    "ppo_eval_episodes": ["variant", "seed", "return", "length"],
}


def aggregate_ppo(cfg: dict, tidy: dict, out: Path, write_tidy: bool = True):
    """Write the across-seed tables of the PPO study from its tidy per-seed tables."""
    from rl.analysis import aggregation as agg
    from rl.core.files import write_csv

    if write_tidy:
        for stem, frame in tidy.items():
            write_csv(out / f"{stem}.csv", frame)
    tables = agg.ppo_tables(
        tidy["ppo_train"],
        tidy["ppo_train_eval"],
        tidy["ppo_eval_episodes"],
        cfg["aggregate"],
        variant_order=config_mod.variant_names(cfg, "ppo"),
    )
    for stem, frame in tables.items():
        write_csv(out / f"{stem}.csv", frame)
    return tables


def cmd_aggregate(args) -> None:
    from rl.analysis import aggregation as agg
    from rl.core import provenance
    from rl.tracking.sync import summary_rows

    cfg = _setup(args)
    started = datetime.now(UTC)
    given = {
        "ppo_train": args.train,
        "ppo_train_eval": args.train_eval,
        "ppo_eval_episodes": args.episodes,
    }
    tidy = {stem: agg.read_tables(given[stem], cols) for stem, cols in PPO_TIDY.items()}
    out = Path(args.out_dir)
    tables = aggregate_ppo(cfg, tidy, out)
    summary = tables["ppo_summary"]
    train = tidy["ppo_train"]
    prov = provenance.write(
        out,
        cfg,
        stage="aggregate",
        started=started,
        inputs=[*args.train, *args.train_eval, *args.episodes],
        extra={"seeds": sorted(train["seed"].unique().tolist())},
    )
    rows = summary_rows(summary)
    for c in tables["ppo_comparison"].to_dict("records"):
        key = f"poi.{c['x']}_vs_{c['y']}.{c['quantity']}"
        rows[0][1].update(
            {
                key: c["probability_of_improvement"],
                f"{key}.ci_low": c["ci_low"],
                f"{key}.ci_high": c["ci_high"],
            }
        )
    _track(
        cfg,
        args,
        "aggregate",
        prov,
        rows=rows,
        artifacts=sorted(out.glob("ppo_*.csv")) + [out / "provenance.json"],
    )
    log.info(
        "aggregated %d seeds:\n%s\n%s",
        train["seed"].nunique(),
        summary[["variant", "quantity", "mean", "ci_low", "ci_high", "iqm"]].to_string(index=False),
        tables["ppo_comparison"].to_string(index=False),
    )


def _read_agg(agg_dir: Path, name: str, rule: str):
    import pandas as pd

    path = agg_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing aggregate table '{path}'. Run the {rule} rule (or `python -m rl "
            f"figures --from <reference folder>` on a reference result)."
        )
    return pd.read_csv(path)


def plot_ppo(cfg: dict, agg_dir: Path, png, pdf, stats_png, stats_pdf) -> None:
    """The PPO four-panel figure and the statistics figure, from the aggregate tables."""
    from rl.analysis import plotting

    def read(name):
        return _read_agg(agg_dir, name, "aggregate")

    tables = {"train": read("ppo_train.csv"), "train_eval": read("ppo_train_eval.csv")}
    curves = {
        "train": read("ppo_train_curves.csv"),
        "train_eval": read("ppo_train_eval_curves.csv"),
    }
    p = cfg["plot"]
    size, dpi = (p["width_in"], p["height_in"]), p["dpi"]
    order = config_mod.variant_names(cfg, "ppo")
    fig = plotting.ppo_figure(
        tables, curves, f"PPO on {cfg['env']['id']} ({cfg['study']})", size, dpi, order
    )
    plotting.save_figure(fig, png, pdf)
    fig = plotting.statistics_figure(
        read("ppo_summary.csv"),
        read("ppo_performance_profile.csv"),
        read("ppo_comparison.csv"),
        read("ppo_frames_to_threshold.csv"),
        f"Final evaluation return across seeds ({cfg['study']})",
        size,
        dpi,
        order,
    )
    plotting.save_figure(fig, stats_png, stats_pdf)


def cmd_plot(args) -> None:
    from rl.core import provenance

    cfg = _setup(args)
    started = datetime.now(UTC)
    agg_dir = Path(args.agg_dir)
    plot_ppo(cfg, agg_dir, args.png, args.pdf, args.stats_png, args.stats_pdf)
    prov = provenance.write(
        Path(args.png).parent,
        cfg,
        stage="plot",
        started=started,
        inputs=sorted(agg_dir.glob("ppo_*.csv")),
    )
    _track(
        cfg,
        args,
        "plot",
        prov,
        artifacts=[
            args.png,
            args.pdf,
            args.stats_png,
            args.stats_pdf,
            Path(args.png).parent / "provenance.json",
        ],
    )
    log.info("figures -> %s, %s, %s, %s", args.png, args.pdf, args.stats_png, args.stats_pdf)


def cmd_train_pendulum(args) -> None:
    import pandas as pd

    from rl.core import provenance
    from rl.core.checkpoint import save
    from rl.core.files import write_csv
    from rl.pendulum.train import evaluate_controller, train
    from rl.ppo.train import resolve_device
    from rl.tracking.run import StageRun

    cfg = _setup(args)
    started = datetime.now(UTC)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg["pendulum"]["device"])
    stage = "train_pendulum"
    prov = provenance.record(
        cfg, stage=stage, seed=args.seed, variant=args.variant, device=str(device), started=started
    )
    with StageRun(
        cfg, args.mlflow_marker, stage, prov, args.seed, args.variant, config_path=args.config
    ) as run:

        def on_iteration(row):
            run.log_metrics({k: v for k, v in row.items() if k != "iteration"}, row["frames"])

        result = train(cfg, args.seed, out, on_iteration=on_iteration)
        state = result["state"]
        tag = {"variant": args.variant, "seed": args.seed}
        metrics = pd.DataFrame(state["rows"]).assign(**tag)
        evals = evaluate_controller(cfg, result["policy"], result["device"]).assign(**tag)
        done = {"iterations": state["iteration"], "train_wall_s": state["wall_s"]}
        save(out / "policy.pt", {"policy": result["policy"].state_dict(), **done})
        write_csv(out / "train_metrics.csv", metrics)
        write_csv(out / "eval_trajectories.csv", evals)
        last10 = float(metrics["final_step_reward"].tail(10).mean())
        prov = provenance.write(
            out,
            cfg,
            stage=stage,
            seed=args.seed,
            variant=args.variant,
            device=str(result["device"]),
            started=started,
            extra={**done, "final_step_reward_last10": last10},
        )
        run.log_artifacts(
            [out / "train_metrics.csv", out / "eval_trajectories.csv", out / "provenance.json"]
        )
        result["checkpoint"].unlink(missing_ok=True)
    log.info(
        "trained %d iterations in %.0fs (median %.1f it/s); final-step reward, mean of the "
        "last 10 iterations: %.4f",
        state["iteration"],
        state["wall_s"],
        metrics["iters_per_s"].median(),
        last10,
    )


def cmd_animate_pendulum(args) -> None:
    import pandas as pd

    from rl.analysis.video import animate_pendulum
    from rl.core import provenance
    from rl.core.files import write_json

    cfg = _setup(args)
    started = datetime.now(UTC)
    path = Path(args.trajectories)
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing pendulum trajectories '{path}'. Run the train_pendulum rule for seed "
            f"{args.seed} (snakemake --cores N '{path}') or pass the right path."
        )
    evals = pd.read_csv(path)
    if "seed" in evals.columns and set(evals["seed"]) != {args.seed}:
        raise ValueError(
            f"'{path}' holds the trajectories of seed(s) {sorted(set(evals['seed']))}, not "
            f"--seed {args.seed}. Pass that seed's eval_trajectories.csv."
        )
    title = f"Pendulum controller, seed {args.seed} ({cfg['study']})"
    row = animate_pendulum(
        evals, cfg["pendulum"]["physics"], cfg["video"], args.mp4, args.gif, title
    )
    out = Path(args.mp4).parent
    write_json(out / "animation.json", row)
    prov = provenance.write(
        out, cfg, stage="animate_pendulum", seed=args.seed, variant=args.variant, started=started
    )
    _track(
        cfg,
        args,
        "animate_pendulum",
        prov,
        artifacts=[args.mp4, args.gif, out / "animation.json", out / "provenance.json"],
    )
    log.info(
        "pendulum animation: %d starts, %d frames in %.1f s; %s %d bytes, %s %d bytes",
        row["starts"],
        row["frames"],
        row["mp4_s"],
        args.mp4,
        row["mp4_bytes"],
        args.gif,
        row["gif_bytes"],
    )


PENDULUM_TRAIN_COLUMNS = ["variant", "seed", "iteration", "return", "final_step_reward"]
PENDULUM_EVAL_COLUMNS = ["variant", "seed", "start", "time_s", "angle", "torque", "reward"]


PENDULUM_TIDY = {"train": PENDULUM_TRAIN_COLUMNS, "eval_trajectories": PENDULUM_EVAL_COLUMNS}


def aggregate_pendulum(cfg: dict, tidy: dict, out: Path, write_tidy: bool = True):
    """Write the across-seed tables of the pendulum study from its tidy per-seed tables."""
    from rl.analysis import aggregation as agg
    from rl.core.files import write_csv

    boot = agg.Bootstrap.from_config(cfg["aggregate"])
    train, evals = tidy["train"], tidy["eval_trajectories"].copy()
    evals["abs_angle"] = evals["angle"].abs()  # averages across seeds without the wrap at pi
    if write_tidy:
        write_csv(out / "train.csv", train)
        write_csv(out / "eval_trajectories.csv", evals)
    tables = {
        "train_curves": agg.summarise_curves(
            train, "iteration", ["return", "final_step_reward", "grad_norm"], boot
        ),
        "eval_curves": agg.summarise_curves(
            evals,
            "time_s",
            ["abs_angle", "angle", "speed", "torque"],
            boot,
            groups=("variant", "start"),
        ),
        "summary": agg.pendulum_summary(train, evals, boot),
    }
    for stem, frame in tables.items():
        write_csv(out / f"{stem}.csv", frame)
    return tables


def cmd_aggregate_pendulum(args) -> None:
    from rl.analysis import aggregation as agg
    from rl.core import provenance
    from rl.tracking.sync import summary_rows

    cfg = _setup(args)
    started = datetime.now(UTC)
    tidy = {
        "train": agg.read_tables(args.train, PENDULUM_TRAIN_COLUMNS),
        "eval_trajectories": agg.read_tables(args.evals, PENDULUM_EVAL_COLUMNS),
    }
    out = Path(args.out_dir)
    summary = aggregate_pendulum(cfg, tidy, out)["summary"]
    prov = provenance.write(
        out,
        cfg,
        stage="aggregate_pendulum",
        started=started,
        inputs=[*args.train, *args.evals],
        extra={"seeds": sorted(tidy["train"]["seed"].unique().tolist())},
    )
    _track(
        cfg,
        args,
        "aggregate_pendulum",
        prov,
        rows=summary_rows(summary),
        artifacts=sorted(out.glob("*.csv")) + [out / "provenance.json"],
    )
    log.info(
        "aggregated %d pendulum seeds:\n%s",
        tidy["train"]["seed"].nunique(),
        summary[["variant", "quantity", "mean", "ci_low", "ci_high", "per_seed"]].to_string(
            index=False
        ),
    )


def plot_pendulum(cfg: dict, agg_dir: Path, png, pdf) -> None:
    from rl.analysis import plotting

    def read(name):
        return _read_agg(agg_dir, name, "aggregate_pendulum")

    tables = {"train": read("train.csv"), "eval": read("eval_trajectories.csv")}
    curves = {"train": read("train_curves.csv"), "eval": read("eval_curves.csv")}
    p = cfg["plot"]
    fig = plotting.pendulum_figure(
        tables,
        curves,
        f"Pendulum swing-up, policy trained through the simulator ({cfg['study']})",
        (p["width_in"], p["height_in"]),
        p["dpi"],
    )
    plotting.save_figure(fig, png, pdf)


def cmd_plot_pendulum(args) -> None:
    from rl.core import provenance

    cfg = _setup(args)
    started = datetime.now(UTC)
    agg_dir = Path(args.agg_dir)
    plot_pendulum(cfg, agg_dir, args.png, args.pdf)
    prov = provenance.write(
        Path(args.png).parent,
        cfg,
        stage="plot_pendulum",
        started=started,
        inputs=sorted(agg_dir.glob("*.csv")),
    )
    _track(
        cfg,
        args,
        "plot_pendulum",
        prov,
        artifacts=[args.png, args.pdf, Path(args.png).parent / "provenance.json"],
    )
    log.info("figure -> %s, %s", args.png, args.pdf)


REFERENCE_FILES = [
    # what a reference result holds: the tidy per-seed tables (the inputs of `figures`), the
    # statistics and figures made from them, and the provenance of each folder
    "config.yaml",
    "aggregate/ppo_train.csv",
    "aggregate/ppo_train_eval.csv",
    "aggregate/ppo_eval_episodes.csv",
    "aggregate/pendulum/train.csv",
    "aggregate/pendulum/eval_trajectories.csv",
]


def cmd_figures(args) -> None:
    """Rebuild the statistics tables and every figure from a folder of tidy per-seed tables
    (a reference result, or a study's results folder), without training."""
    import json

    import pandas as pd

    from rl.core import provenance

    src = Path(getattr(args, "from"))
    out = Path(args.out) if args.out else src
    cfg = config_mod.load(src / "config.yaml")
    started = datetime.now(UTC)

    def read(rel, cols):
        path = src / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"'{path}' is missing: `figures` needs the tidy per-seed tables of a study "
                f"({', '.join(REFERENCE_FILES)}) under '{src}'. Make them with the workflow "
                f"(results/<study>/) or `python -m rl export-reference`."
            )
        frame = pd.read_csv(path)
        missing = set(cols) - set(frame.columns)
        if missing:
            raise ValueError(f"Table '{path}' lacks the columns {sorted(missing)}.")
        return frame

    made = []
    if config_mod.variant_names(cfg, "ppo"):
        tidy = {stem: read(f"aggregate/{stem}.csv", cols) for stem, cols in PPO_TIDY.items()}
        agg_dir = out / "aggregate"
        aggregate_ppo(cfg, tidy, agg_dir, write_tidy=out != src)
        figs = out / "figures"
        names = ["ppo.png", "ppo.pdf", "ppo_statistics.png", "ppo_statistics.pdf"]
        plot_ppo(cfg, agg_dir, *(figs / n for n in names))
        made += [figs / n for n in names]
    if config_mod.variant_names(cfg, "pendulum"):
        tidy = {
            stem: read(f"aggregate/pendulum/{stem}.csv", cols)
            for stem, cols in PENDULUM_TIDY.items()
        }
        agg_dir = out / "aggregate" / "pendulum"
        aggregate_pendulum(cfg, tidy, agg_dir, write_tidy=out != src)
        figs = out / "figures" / "pendulum"
        plot_pendulum(cfg, agg_dir, figs / "pendulum.png", figs / "pendulum.pdf")
        made += [figs / "pendulum.png", figs / "pendulum.pdf"]
    inputs = [src / rel for rel in REFERENCE_FILES if (src / rel).is_file()]
    for folder in sorted({p.parent for p in made}):
        record = folder / provenance.RECORD
        old = json.loads(record.read_text()) if record.is_file() else {}
        if old.get("outputs") == provenance.folder_outputs(folder):
            # the same bytes as the record describes: keep it (a clean clone stays clean)
            log.info("%s: figures unchanged, byte for byte; kept %s", folder, record)
            continue
        provenance.write(folder, cfg, stage="figures", started=started, inputs=inputs)
    log.info("rebuilt from %s:\n%s", src, "\n".join(str(p) for p in made))


def cmd_export_reference(args) -> None:
    """Copy a finished study's tidy tables, statistics, figures and provenance to a tracked
    folder (the reference result `figures` rebuilds from)."""
    import shutil

    cfg = config_mod.load(args.config)
    study = layout.study_dir(cfg)
    to = Path(args.to)
    wanted = [*REFERENCE_FILES]
    for folder in ("aggregate", "aggregate/pendulum", "figures", "figures/pendulum"):
        if (study / folder).is_dir():
            wanted += [
                f"{folder}/{p.name}"
                for p in sorted((study / folder).iterdir())
                if p.is_file() and p.suffix in (".csv", ".json", ".png", ".pdf")
            ]
    copied = 0
    for rel in dict.fromkeys(wanted):
        if (study / rel).is_file():
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(study / rel, to / rel)
            copied += 1
    if not copied:
        raise FileNotFoundError(f"Nothing to export under '{study}': run the study first.")
    log.info("exported %d files of %s to %s", copied, study, to)


def cmd_provenance(args) -> None:
    import json

    from rl.core import provenance

    if args.json:
        _, rec = provenance.find(args.path)
        print(json.dumps(rec, indent=2, sort_keys=True))
    else:
        print(provenance.describe(args.path))


def cmd_mlflow_sync(args) -> None:
    from rl.tracking.sync import sync_study

    cfg = config_mod.load(args.config)
    counts = sync_study(cfg, uri=args.to, config_path=args.config)
    if counts["other_config"]:
        log.warning(
            "%d output folders were made with another config and were not synced",
            counts["other_config"],
        )


def cmd_ui(args) -> None:
    import subprocess

    from rl.tracking.run import redact, tracking_uri

    cfg = config_mod.load(args.config)
    uri = tracking_uri(cfg)
    print(f"MLflow UI on http://{args.host}:{args.port} for {redact(uri)}", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            args.host,
            "--port",
            str(args.port),
        ],
        check=False,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("validate-config", help="validate a config, optionally write it resolved")
    p.add_argument("--config", required=True)
    p.add_argument("--write", help="write the resolved config (defaults filled) here")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("mlflow-init", help="create the MLflow store, experiment, parent runs")
    _common(p)
    p.add_argument("--marker", required=True, help="marker JSON written when done")
    p.set_defaults(func=cmd_mlflow_init)

    p = sub.add_parser("obs-norm-stats", help="observation loc/scale from random-policy steps")
    _common(p, seed=True)
    p.add_argument("--out", required=True, help="statistics JSON")
    p.add_argument("--mlflow-marker", help="MLflow marker from mlflow-init (omit: untracked)")
    p.set_defaults(func=cmd_obs_norm_stats)

    p = sub.add_parser("train-ppo", help="train PPO for one seed (resumes from a checkpoint)")
    _common(p, seed=True)
    p.add_argument("--obs-stats", required=True, help="statistics JSON from obs-norm-stats")
    p.add_argument("--out-dir", required=True, help="folder for weights, tables, checkpoint")
    p.add_argument("--mlflow-marker", help="MLflow marker from mlflow-init (omit: untracked)")
    p.set_defaults(func=cmd_train_ppo)

    p = sub.add_parser("evaluate-ppo", help="deterministic episodes of a trained policy")
    _common(p, seed=True)
    p.add_argument("--policy", required=True, help="policy.pt from train-ppo")
    p.add_argument("--obs-stats", required=True)
    p.add_argument("--episodes-out", required=True, help="CSV, one row per episode")
    p.add_argument("--summary-out", required=True, help="JSON summary")
    p.add_argument(
        "--video-dir",
        help="folder for the first and worst episodes' videos (video.enabled); omit: none",
    )
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_evaluate_ppo)

    p = sub.add_parser("aggregate", help="tidy tables and bootstrap CIs across seeds")
    _common(p)
    p.add_argument("--train", nargs="+", required=True, help="per-seed train_metrics.csv")
    p.add_argument("--train-eval", nargs="+", required=True, help="per-seed train_eval.csv")
    p.add_argument("--episodes", nargs="+", required=True, help="per-seed episodes.csv")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("plot", help="four-panel PPO figure (PNG and PDF) from aggregate tables")
    _common(p)
    p.add_argument("--agg-dir", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--stats-png", required=True, help="statistics figure (IQM, profile, PoI)")
    p.add_argument("--stats-pdf", required=True)
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "train-pendulum",
        help="train the pendulum controller through the simulator for one seed (resumable)",
    )
    _common(p, seed=True)
    p.add_argument("--out-dir", required=True, help="folder for weights, tables, checkpoint")
    p.add_argument("--mlflow-marker", help="MLflow marker from mlflow-init (omit: untracked)")
    p.set_defaults(func=cmd_train_pendulum)

    p = sub.add_parser(
        "animate-pendulum", help="MP4 and GIF of one seed's learned pendulum controller"
    )
    _common(p, seed=True)
    p.add_argument("--trajectories", required=True, help="eval_trajectories.csv of the seed")
    p.add_argument("--mp4", required=True)
    p.add_argument("--gif", required=True)
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_animate_pendulum)

    p = sub.add_parser("aggregate-pendulum", help="pendulum tables and bootstrap CIs across seeds")
    _common(p)
    p.add_argument("--train", nargs="+", required=True, help="per-seed train_metrics.csv")
    p.add_argument("--evals", nargs="+", required=True, help="per-seed eval_trajectories.csv")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_aggregate_pendulum)

    p = sub.add_parser("plot-pendulum", help="four-panel pendulum figure (PNG and PDF)")
    _common(p)
    p.add_argument("--agg-dir", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--mlflow-marker")
    p.set_defaults(func=cmd_plot_pendulum)

    p = sub.add_parser(
        "mlflow-sync",
        help="rebuild a study's MLflow records from results/ (idempotent), or push them",
    )
    p.add_argument(
        "--config", required=True, help="the study's config (results/<study>/config.yaml)"
    )
    p.add_argument(
        "--to",
        help="tracking URI to write to (default: the study's own store, as the jobs use)",
    )
    p.set_defaults(func=cmd_mlflow_sync)

    p = sub.add_parser(
        "figures",
        help="rebuild the statistics and figures from tidy per-seed tables (no training)",
    )
    p.add_argument(
        "--from",
        required=True,
        help="folder with config.yaml and aggregate/ tidy tables (e.g. reference/ci-variants)",
    )
    p.add_argument("--out", help="where to write aggregate/ and figures/ (default: --from)")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "export-reference", help="copy a study's tables, figures and provenance to a folder"
    )
    p.add_argument(
        "--config", required=True, help="the study's config (results/<study>/config.yaml)"
    )
    p.add_argument("--to", required=True, help="e.g. reference/<study>")
    p.set_defaults(func=cmd_export_reference)

    p = sub.add_parser("provenance", help="print what made a result file, figure or folder")
    p.add_argument("path", help="a file or folder under results/ (or a reference result)")
    p.add_argument("--json", action="store_true", help="the whole record as JSON")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("ui", help="open the MLflow UI on the study's store")
    p.add_argument("--config", required=True)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (local only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def _os_error_message(exc: OSError) -> str:
    where = f" '{exc.filename}'" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return (
            f"No space left on the device while writing{where}. Earlier results are intact "
            f"(writes are atomic); free space or point results_dir at a larger disk, then rerun."
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"Cannot write{where}: {exc.strerror}. Make the results directory writable "
            f"(or set results_dir in the config to a folder you own), then rerun."
        )
    return f"{exc.strerror or exc}{where}. Check the path and the disk, then rerun."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # TorchRL logs every storage it initialises at INFO: one line per PPO batch, drowning
    # the progress lines in the job logs. Its warnings still show (it reads this variable
    # when imported, which the verbs do later; RL_LOGGING_LEVEL=INFO brings them back).
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    t0 = time.perf_counter()
    try:
        args.func(args)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {_os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"error: {args.verb} interrupted. Finished outputs are intact and nothing "
            f"half-written was left; rerun the same command (or snakemake) to resume.",
            file=sys.stderr,
        )
        return 130
    log.info("%s finished in %.1fs", args.verb, time.perf_counter() - t0)
    return 0
