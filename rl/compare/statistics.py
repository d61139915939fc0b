"""The comparison's across-seed statistics, from the tidy table of snapshot episodes alone
(rliable's estimators, through rl.analysis.aggregation: IQM with stratified percentile-
bootstrap intervals, performance profiles, probability of improvement).

A seed's score at a snapshot is its mean return over the snapshot's evaluation episodes.
Curves against simulator and gradient steps combine the seeds at each snapshot (all seeds
of a variant are snapshotted at the same steps); against wall-clock seconds each seed's
curve is read on a common grid first (the score of its latest snapshot by then). Pure
pandas/numpy: tested without training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rl.analysis import aggregation as agg

KEYS = ["variant", "method", "seed"]
AXES = ("sim_steps", "grad_steps", "wall_s")


def seed_scores(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per variant, seed and snapshot: its axes, score (mean return) and the mean
    share of clamped actions over its episodes."""
    by = [*KEYS, *AXES]
    scores = episodes.groupby(by, sort=True).agg(
        score=("return", "mean"), clamped_fraction=("clamped_fraction", "mean")
    )
    return scores.reset_index()


def _band(matrix: np.ndarray, boot: agg.Bootstrap) -> dict[str, np.ndarray]:
    """IQM and mean over the rows (seeds) of `matrix`, column by column, with intervals."""
    q, q_low, q_high = boot.interval([matrix], agg.iqm)
    m, low, high = boot.interval([matrix], np.mean)
    return {"iqm": q, "iqm_ci_low": q_low, "iqm_ci_high": q_high}, {
        "mean": m,
        "ci_low": low,
        "ci_high": high,
    }


def wall_grid(scores: pd.DataFrame, points: int) -> np.ndarray:
    return np.linspace(0.0, float(scores["wall_s"].max()), points)


def on_wall_grid(run: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """One seed's score at each time of `grid`: that of its latest snapshot by then."""
    run = run.sort_values("wall_s")
    at = np.searchsorted(run["wall_s"].to_numpy(), grid, side="right") - 1
    return run["score"].to_numpy()[np.clip(at, 0, None)]


def curves(scores: pd.DataFrame, boot: agg.Bootstrap, wall_points: int) -> pd.DataFrame:
    """Per variant and axis (sim_steps, grad_steps, wall_s): the IQM and mean score across
    seeds at each x, with intervals, long format."""
    grid = wall_grid(scores, wall_points)
    rows = []
    for (variant, method), group in scores.groupby(["variant", "method"], sort=True):
        seeds = sorted(group["seed"].unique())
        for axis in AXES:
            if axis == "wall_s":
                runs = group.groupby("seed")
                matrix = np.stack([on_wall_grid(runs.get_group(s), grid) for s in seeds])
                xs = grid
            else:
                wide = group.pivot_table(index="seed", columns=axis, values="score")
                matrix, xs = wide.to_numpy(dtype=float), wide.columns.to_numpy()
            stats, ci = _band(matrix, boot)
            for j, x in enumerate(xs):
                rows.append(
                    {
                        "variant": variant,
                        "method": method,
                        "axis": axis,
                        "x": float(x),
                        **{k: float(v[j]) for k, v in {**stats, **ci}.items()},
                        "n_seeds": len(seeds),
                        "seeds": " ".join(str(int(s)) for s in seeds),
                    }
                )
    return pd.DataFrame(rows).assign(**boot.columns())


def at_budget(scores: pd.DataFrame, budget: int | None) -> pd.Series:
    """Each seed's score at `budget` simulator steps (None: its last snapshot), indexed by
    (variant, seed)."""
    if budget is None:
        picked = scores.sort_values("sim_steps").groupby(["variant", "seed"]).tail(1)
    else:
        picked = scores[scores["sim_steps"] == budget]
    return picked.set_index(["variant", "seed"])["score"].sort_index()


def summary(scores: pd.DataFrame, budgets: Sequence[int], boot: agg.Bootstrap) -> pd.DataFrame:
    """Per variant: the final score, the score at each budget, and the run's totals
    (simulator steps, gradient steps, training seconds), mean and IQM across seeds with
    intervals (rl.analysis.aggregation.summarise_per_seed)."""
    last = scores.sort_values("sim_steps").groupby(["variant", "seed"]).tail(1)
    last = last.set_index(["variant", "seed"]).sort_index()
    per_seed = {"final_return": at_budget(scores, None)}
    per_seed |= {f"return_at_{b}": at_budget(scores, b) for b in budgets}
    per_seed |= {f"total_{axis}": last[axis].astype(float) for axis in AXES}
    per_seed["sim_steps_per_s"] = last["sim_steps"] / last["wall_s"]
    return agg.summarise_per_seed(per_seed, boot)


def profile(scores: pd.DataFrame, boot: agg.Bootstrap, points: int) -> pd.DataFrame:
    """The performance profile of the final scores, thresholds from the lowest to the
    highest (returns are negative here)."""
    final = at_budget(scores, None)
    taus = np.linspace(float(final.min()), float(final.max()), points)
    return agg.performance_profile(final, boot, points, taus=taus)


def pair_of(requested: Sequence[str] | None, variants: Sequence[str]) -> list[str]:
    """The compared pair: compare.pair, else the first two variants."""
    return agg.comparison_pair(requested, list(variants)) or []


def improvement(
    scores: pd.DataFrame, pair: Sequence[str], budgets: Sequence[int], boot: agg.Bootstrap
) -> pd.DataFrame:
    """P(pair[0] > pair[1]) on the score at each budget and at the end, with intervals."""
    frames = []
    for budget in [*budgets, None]:
        quantity = "final_return" if budget is None else f"return_at_{budget}"
        row = agg.compare(at_budget(scores, budget), pair, boot, quantity)
        frames.append(row.assign(budget_steps=np.nan if budget is None else budget))
    return pd.concat(frames, ignore_index=True)


def crossings(scores: pd.DataFrame, thresholds: Sequence[float]) -> pd.DataFrame:
    """Per variant, seed and threshold: the first snapshot whose score is at least the
    threshold, on each axis (NaN: never within the run)."""
    rows = []
    for (variant, method, seed), run in scores.sort_values("sim_steps").groupby(KEYS):
        for threshold in thresholds:
            hit = run[run["score"] >= threshold]
            first = hit.iloc[0] if len(hit) else None
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "seed": int(seed),
                    "threshold": float(threshold),
                    "reached": first is not None,
                    **{a: float(first[a]) if first is not None else np.nan for a in AXES},
                    "run_sim_steps": int(run["sim_steps"].max()),
                    "final_return": float(run["score"].iloc[-1]),
                }
            )
    return pd.DataFrame(rows)


def crossing_summary(cross: pd.DataFrame, boot: agg.Bootstrap) -> pd.DataFrame:
    """Per variant, threshold and axis: the fraction of seeds that reached the threshold
    (quantity `reached_<t>`), and the mean and IQM of the first crossing among the seeds
    that reached it (`<axis>_to_<t>`; n_seeds says how many), with intervals."""
    frames = []
    for threshold, group in cross.groupby("threshold", sort=True):
        indexed = group.set_index(["variant", "seed"]).sort_index()
        per_seed = {f"reached_{threshold:g}": indexed["reached"].astype(float)}
        per_seed |= {f"{axis}_to_{threshold:g}": indexed[axis] for axis in AXES}
        frames.append(agg.summarise_per_seed(per_seed, boot).assign(threshold=threshold))
    return pd.concat(frames, ignore_index=True)


def first_to(cross: pd.DataFrame, pair: Sequence[str], boot: agg.Bootstrap) -> pd.DataFrame:
    """Per threshold and axis: the probability that a seed of pair[0] crosses the threshold
    before (in fewer steps or seconds than) a seed of pair[1], a seed that never crosses
    counting as last (ties: half), with its interval."""
    frames = []
    for (threshold, axis), group in cross.melt(
        id_vars=["variant", "seed", "threshold"], value_vars=list(AXES), var_name="axis"
    ).groupby(["threshold", "axis"], sort=True):
        earlier = -group.set_index(["variant", "seed"])["value"].fillna(np.inf).sort_index()
        row = agg.compare(earlier, pair, boot, f"first_{axis}_to_{threshold:g}")
        frames.append(row.assign(threshold=threshold, axis=axis))
    return pd.concat(frames, ignore_index=True)
