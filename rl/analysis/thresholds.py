"""Per seed: the final evaluation score, the frames and training seconds until the
deterministic evaluation first reached a threshold, and whether the seed stayed there."""

from __future__ import annotations

import numpy as np
import pandas as pd


def final_eval_returns(episodes: pd.DataFrame) -> pd.Series:
    """Each seed's score: its mean return over the final evaluation episodes."""
    return episodes.groupby(["variant", "seed"])["return"].mean()


def frames_to_threshold(
    train_eval: pd.DataFrame, episodes: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    """Per variant and seed: the first frames at which the deterministic evaluation during
    training reached `threshold` (NaN if never), and whether the seed is still there at the
    end (its last evaluation during training and its final evaluation's mean)."""
    final = final_eval_returns(episodes)
    rows = []
    for (variant, seed), run in train_eval.sort_values("frames").groupby(["variant", "seed"]):
        hit = run.loc[run["eval_return"] >= threshold, "frames"]
        last = float(run["eval_return"].iloc[-1])
        final_mean = float(final.get((variant, seed), np.nan))
        rows.append(
            {
                "variant": variant,
                "seed": int(seed),
                "threshold": threshold,
                "reached": bool(len(hit)),
                "frames_to_threshold": float(hit.iloc[0]) if len(hit) else np.nan,
                "frames_trained": int(run["frames"].max()),
                "last_train_eval_return": last,
                "final_eval_return": final_mean,
                "solved_at_end": bool(last >= threshold and final_mean >= threshold),
            }
        )
    return pd.DataFrame(rows)


def seconds_to_threshold(thresholds: pd.DataFrame, train: pd.DataFrame) -> pd.Series:
    """Per (variant, seed) of `thresholds` (frames_to_threshold's table): the training
    seconds spent when the threshold was first reached, read from the training table's
    wall_s (the cumulative time of the training batches) at that batch; NaN if never."""
    runs = {key: run.sort_values("frames") for key, run in train.groupby(["variant", "seed"])}
    seconds = {}
    for r in thresholds.to_dict("records"):
        key, frames = (r["variant"], int(r["seed"])), r["frames_to_threshold"]
        run = runs.get(key)
        done = (
            run.loc[run["frames"] >= frames, "wall_s"]
            if run is not None and "wall_s" in run and not np.isnan(frames)
            else []
        )
        seconds[key] = float(done.iloc[0]) if len(done) else np.nan
    index = pd.MultiIndex.from_tuples(list(seconds), names=["variant", "seed"])
    return pd.Series(list(seconds.values()), index=index, dtype=float)


def threshold_table(
    train: pd.DataFrame, train_eval: pd.DataFrame, episodes: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    """frames_to_threshold's table with each seed's training seconds to the threshold."""
    table = frames_to_threshold(train_eval, episodes, threshold)
    return table.assign(seconds_to_threshold=seconds_to_threshold(table, train).to_numpy())
