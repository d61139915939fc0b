"""Fold per-seed tables into tidy long tables and across-seed summaries with
bootstrap confidence intervals. Pure pandas/numpy: tested without training."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


def bootstrap_ci(
    values: Iterable[float], n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean. One value gives a zero-width interval."""
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(low), float(high)


def read_tables(paths: Iterable[str | Path], required: Iterable[str]) -> pd.DataFrame:
    """Concatenate per-seed CSVs (each carries its own variant/seed columns)."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Missing per-seed table '{path}'. Run the workflow for that seed first "
                f"(snakemake --cores N '{path}')."
            )
        frame = pd.read_csv(path)
        missing = set(required) - set(frame.columns)
        if missing:
            raise ValueError(
                f"Table '{path}' lacks the columns {sorted(missing)}: it was written by an "
                f"older or different version. Delete it and rerun its rule."
            )
        frames.append(frame)
    if not frames:
        raise ValueError("No per-seed tables given to aggregate.")
    return pd.concat(frames, ignore_index=True)


def summarise_curves(
    tidy: pd.DataFrame,
    by: str,
    metrics: list[str],
    n_boot: int,
    confidence: float,
    groups: tuple[str, ...] = ("variant",),
) -> pd.DataFrame:
    """Per `groups` (the variant; add e.g. a start-state column) and `by` value (e.g.
    frames): mean and CI across seeds, long format."""
    rows = []
    for keys, group in tidy.groupby([*groups, by], sort=True):
        for metric in metrics:
            per_seed = group.groupby("seed")[metric].mean()
            mean, low, high = bootstrap_ci(per_seed, n_boot, confidence)
            rows.append(
                {
                    **dict(zip([*groups, by], keys, strict=True)),
                    "metric": metric,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": int(per_seed.size),
                }
            )
    return pd.DataFrame(rows)


def final_summary(
    train: pd.DataFrame,
    train_eval: pd.DataFrame,
    episodes: pd.DataFrame,
    n_boot: int,
    confidence: float,
) -> pd.DataFrame:
    """One row per variant and quantity: the across-seed mean and CI of each seed's final value."""
    per_seed = {
        "eval_return": episodes.groupby(["variant", "seed"])["return"].mean(),
        "eval_episode_length": episodes.groupby(["variant", "seed"])["length"].mean(),
        "final_train_reward_mean": train.sort_values("frames")
        .groupby(["variant", "seed"])["train_reward_mean"]
        .last(),
        "final_train_eval_return": train_eval.sort_values("frames")
        .groupby(["variant", "seed"])["eval_return"]
        .last(),
        "best_train_eval_return": train_eval.groupby(["variant", "seed"])["eval_return"].max(),
        "train_frames_per_s": train.groupby(["variant", "seed"])["frames_per_s"].median(),
    }
    return summarise_per_seed(per_seed, n_boot, confidence)


def summarise_per_seed(per_seed: dict[str, pd.Series], n_boot: int, confidence: float):
    """One row per variant and quantity from {quantity: values indexed by (variant, seed)}:
    the across-seed mean, its bootstrap interval and every seed's value."""
    rows = []
    for quantity, series in per_seed.items():
        for variant, values in series.groupby(level="variant"):
            mean, low, high = bootstrap_ci(values.to_numpy(), n_boot, confidence)
            rows.append(
                {
                    "variant": variant,
                    "quantity": quantity,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": int(values.size),
                    "per_seed": " ".join(f"{v:.6g}" for v in values.to_numpy()),
                }
            )
    return pd.DataFrame(rows)


def pendulum_summary(
    train: pd.DataFrame, evals: pd.DataFrame, n_boot: int, confidence: float, last: int = 10
) -> pd.DataFrame:
    """The pendulum study across seeds: final-step reward and return (each seed's mean over
    its `last` iterations, the tutorial's yardstick), training speed, and the controller
    evaluation (return from the fixed starts, distance from upright at their last step)."""
    keys = ["variant", "seed"]
    tail = train.sort_values("iteration").groupby(keys).tail(last).groupby(keys)
    final = evals[evals["step"] == evals["step"].max()].groupby(keys)
    per_seed = {
        "final_step_reward": tail["final_step_reward"].mean(),
        "final_return": tail["return"].mean(),
        "iters_per_s": train.groupby(keys)["iters_per_s"].median(),
        "eval_return": evals.groupby([*keys, "start"])["reward"].sum().groupby(keys).mean(),
        "eval_final_abs_angle": final["angle"].apply(lambda a: a.abs().mean()),
    }
    return summarise_per_seed(per_seed, n_boot, confidence)
