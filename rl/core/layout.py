"""Where every output of a study lives. The Snakefile and the verbs both use this."""

from __future__ import annotations

from pathlib import Path

DEFAULT_VARIANT = "default"


def study_dir(cfg: dict) -> Path:
    return Path(cfg["results_dir"]) / cfg["study"]


def seed_dir(cfg: dict, seed: int | str, variant: str = DEFAULT_VARIANT) -> Path:
    return study_dir(cfg) / variant / f"seed{seed}"


def outputs(cfg: dict) -> dict[str, str]:
    """Path patterns with {variant} and {seed} wildcards, keyed by what they hold."""
    study = study_dir(cfg)
    seed = study / "{variant}" / "seed{seed}"
    return {
        "config": str(study / "config.yaml"),
        "mlflow_marker": str(study / "mlflow" / "initialised.json"),
        "obs_norm": str(seed / "obs_norm" / "stats.json"),
        "ppo_dir": str(seed / "ppo"),
        "ppo_policy": str(seed / "ppo" / "policy.pt"),
        "ppo_metrics": str(seed / "ppo" / "train_metrics.csv"),
        "ppo_train_eval": str(seed / "ppo" / "train_eval.csv"),
        "eval_episodes": str(seed / "eval" / "episodes.csv"),
        "eval_summary": str(seed / "eval" / "summary.json"),
        "eval_dir": str(seed / "eval"),
        "eval_videos": str(seed / "eval" / "videos.json"),
        "eval_video_mp4": str(seed / "eval" / "episode-{episode}.mp4"),
        "eval_video_gif": str(seed / "eval" / "episode-{episode}.gif"),
        "agg_dir": str(study / "aggregate"),
        "agg_train": str(study / "aggregate" / "ppo_train.csv"),
        "agg_train_eval": str(study / "aggregate" / "ppo_train_eval.csv"),
        "agg_eval": str(study / "aggregate" / "ppo_eval_episodes.csv"),
        "agg_summary": str(study / "aggregate" / "ppo_summary.csv"),
        "fig_png": str(study / "figures" / "ppo.png"),
        "fig_pdf": str(study / "figures" / "ppo.pdf"),
        "agg_profile": str(study / "aggregate" / "ppo_performance_profile.csv"),
        "agg_thresholds": str(study / "aggregate" / "ppo_frames_to_threshold.csv"),
        "agg_comparison": str(study / "aggregate" / "ppo_comparison.csv"),
        "fig_stats_png": str(study / "figures" / "ppo_statistics.png"),
        "fig_stats_pdf": str(study / "figures" / "ppo_statistics.pdf"),
        "pendulum_dir": str(seed / "pendulum"),
        "pendulum_policy": str(seed / "pendulum" / "policy.pt"),
        "pendulum_metrics": str(seed / "pendulum" / "train_metrics.csv"),
        "pendulum_eval": str(seed / "pendulum" / "eval_trajectories.csv"),
        "pendulum_animation_mp4": str(seed / "pendulum" / "animation" / "animation.mp4"),
        "pendulum_animation_gif": str(seed / "pendulum" / "animation" / "animation.gif"),
        "agg_pendulum_dir": str(study / "aggregate" / "pendulum"),
        "agg_pendulum_train": str(study / "aggregate" / "pendulum" / "train.csv"),
        "agg_pendulum_train_curves": str(study / "aggregate" / "pendulum" / "train_curves.csv"),
        "agg_pendulum_eval": str(study / "aggregate" / "pendulum" / "eval_trajectories.csv"),
        "agg_pendulum_eval_curves": str(study / "aggregate" / "pendulum" / "eval_curves.csv"),
        "agg_pendulum_summary": str(study / "aggregate" / "pendulum" / "summary.csv"),
        "fig_pendulum_png": str(study / "figures" / "pendulum" / "pendulum.png"),
        "fig_pendulum_pdf": str(study / "figures" / "pendulum" / "pendulum.pdf"),
        # the comparison study (compare:): policy snapshots, their scores, the probe
        "ppo_snapshots": str(seed / "ppo" / "snapshots.pt"),
        "pendulum_snapshots": str(seed / "pendulum" / "snapshots.pt"),
        "compare_episodes": str(seed / "compare" / "episodes.csv"),
        "compare_gradients": str(seed / "gradients" / "gradients.csv"),
        "agg_compare_dir": str(study / "aggregate" / "compare"),
        "agg_compare_summary": str(study / "aggregate" / "compare" / "summary.csv"),
        "fig_compare_png": str(study / "figures" / "compare" / "compare.png"),
        "fig_compare_pdf": str(study / "figures" / "compare" / "compare.pdf"),
        "fig_gradients_png": str(study / "figures" / "compare" / "gradients.png"),
        "fig_gradients_pdf": str(study / "figures" / "compare" / "gradients.pdf"),
        "logs": str(study / "logs"),
    }


def mlflow_default_uri(cfg: dict) -> str:
    db = (study_dir(cfg) / "mlflow" / "mlflow.db").resolve()
    return f"sqlite:///{db}"


def mlflow_artifact_root(cfg: dict) -> str:
    return (study_dir(cfg) / "mlflow" / "artifacts").resolve().as_uri()
