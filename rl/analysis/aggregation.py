"""Fold per-seed tables into tidy long tables and across-seed statistics, the way current
RL practice asks (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"):
mean and interquartile mean (IQM) with stratified percentile-bootstrap 95% intervals,
performance profiles, probability of improvement, frames to a threshold per seed.

The resampling is scipy's (`scipy.stats.bootstrap`), not ours. The maintained `rliable`
(1.2.0) would be the first choice, but it requires arch<8, and arch 7.2.0 (the newest it
allows) fails to import with our pandas 3.1.1; `rliable`'s functions are the ones below
(IQM = 25% trimmed mean, probability of improvement = Mann-Whitney U / (n m), bootstrap
stratified by variant, percentile intervals). Every table records how many seeds and
which, the number of resamples, the confidence and the bootstrap's random seed, so the
intervals are reproducible. Pure pandas/numpy/scipy: tested without training."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from rl.analysis.thresholds import final_eval_returns, threshold_table

# resamples per vectorised call: bounds memory on long curves (1,000 points x 10 seeds)
BATCH = 500
METHOD = "percentile bootstrap, resampling seeds within each variant (scipy.stats.bootstrap)"


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap's settings; a fresh generator per interval, so every interval is
    reproducible on its own whatever else was computed before it."""

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_config(cls, section: dict) -> Bootstrap:
        return cls(section["bootstrap_samples"], section["confidence"], section["bootstrap_seed"])

    def columns(self) -> dict:
        return {
            "confidence": self.confidence,
            "bootstrap_resamples": self.n_resamples,
            "bootstrap_seed": self.seed,
            "bootstrap_method": METHOD,
        }

    def interval(
        self,
        samples: Sequence[np.ndarray],
        statistic: Callable,
        vectorized: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point estimate, low, high) of `statistic` over `samples` (arrays whose axis 0
        is the seeds; several arrays are resampled independently). With fewer than two
        seeds in a sample there is nothing to resample: a zero-width interval."""
        args = {"axis": 0} if vectorized else {}
        point = np.asarray(statistic(*samples, **args), dtype=float)
        if min(len(x) for x in samples) < 2:
            return point, point.copy(), point.copy()
        res = stats.bootstrap(
            tuple(samples),
            statistic,
            n_resamples=self.n_resamples,
            confidence_level=self.confidence,
            method="percentile",
            paired=False,
            vectorized=vectorized,
            batch=BATCH,
            axis=0,
            rng=np.random.default_rng(self.seed),
        )
        ci = res.confidence_interval
        return point, np.asarray(ci.low, dtype=float), np.asarray(ci.high, dtype=float)


def iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (rliable's aggregate_iqm)."""
    return stats.trim_mean(x, proportiontocut=0.25, axis=axis)


def bootstrap_ci(
    values: Iterable[float],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable = np.mean,
) -> tuple[float, float, float]:
    """`statistic` (the mean by default) of the non-missing values and its bootstrap
    interval. One value gives a zero-width interval, none gives NaNs."""
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    point, low, high = Bootstrap(n_boot, confidence, seed).interval([x], statistic)
    return float(point), float(low), float(high)


def _seeds_text(seeds: Iterable) -> str:
    return " ".join(str(int(s)) for s in sorted(seeds))


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
    boot: Bootstrap,
    groups: tuple[str, ...] = ("variant",),
) -> pd.DataFrame:
    """Per `groups` (the variant; add e.g. a start-state column), `by` value (e.g. frames)
    and metric: the mean across seeds and its bootstrap interval, long format. One
    bootstrap per group and metric resamples whole seeds (their curves), as rliable does
    for sample-efficiency curves."""
    rows = []
    for keys, group in tidy.groupby(list(groups), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            grid = group.pivot_table(index="seed", columns=by, values=metric, aggfunc="mean")
            matrix = grid.to_numpy(dtype=float)
            mean, low, high = boot.interval([matrix], np.nanmean)
            counts = np.isfinite(matrix).sum(axis=0)
            for j, x in enumerate(grid.columns):
                rows.append(
                    {
                        **dict(zip(groups, keys, strict=True)),
                        by: x,
                        "metric": metric,
                        "mean": float(mean[j]),
                        "ci_low": float(low[j]),
                        "ci_high": float(high[j]),
                        "n_seeds": int(counts[j]),
                        "seeds": _seeds_text(grid.index[np.isfinite(matrix[:, j])]),
                    }
                )
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values([*groups, by, "metric"], kind="stable", ignore_index=True)
    return out.assign(**boot.columns())


def final_summary(
    train: pd.DataFrame,
    train_eval: pd.DataFrame,
    episodes: pd.DataFrame,
    boot: Bootstrap,
    threshold: float,
) -> pd.DataFrame:
    """One row per variant and quantity: the across-seed mean and IQM of each seed's final
    value, with their intervals; frames and seconds to the threshold count a seed that never
    got there at its whole budget (censored)."""
    by_seed = threshold_table(train, train_eval, episodes, threshold).set_index(["variant", "seed"])
    total_s = train.groupby(["variant", "seed"])["wall_s"].max() if "wall_s" in train else None
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
        "reached_threshold": by_seed["reached"].astype(float),
        "frames_to_threshold": by_seed["frames_to_threshold"].fillna(by_seed["frames_trained"]),
    }
    if total_s is not None:
        per_seed["seconds_to_threshold"] = by_seed["seconds_to_threshold"].fillna(total_s)
    return summarise_per_seed(per_seed, boot)


def summarise_per_seed(per_seed: dict[str, pd.Series], boot: Bootstrap) -> pd.DataFrame:
    """One row per variant and quantity from {quantity: values indexed by (variant, seed)}:
    mean and IQM across seeds with their intervals, and which seeds gave which value."""
    rows = []
    for quantity, series in per_seed.items():
        for variant, values in series.groupby(level="variant", sort=True):
            values = values.dropna().sort_index()
            x = values.to_numpy(dtype=float)
            if x.size == 0:
                continue
            mean, low, high = boot.interval([x], np.mean)
            q, q_low, q_high = boot.interval([x], iqm)
            rows.append(
                {
                    "variant": variant,
                    "quantity": quantity,
                    "mean": float(mean),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "iqm": float(q),
                    "iqm_ci_low": float(q_low),
                    "iqm_ci_high": float(q_high),
                    "n_seeds": int(x.size),
                    "seeds": _seeds_text(values.index.get_level_values("seed")),
                    "per_seed": " ".join(f"{v:.6g}" for v in x),
                    **boot.columns(),
                }
            )
    return pd.DataFrame(rows)


def performance_profile(
    scores: pd.Series, boot: Bootstrap, points: int, taus: np.ndarray | None = None
) -> pd.DataFrame:
    """Run-score distribution per variant (rliable's performance profile): the fraction of
    seeds whose score exceeds tau, for taus from 0 (or the worst score, when negative) to
    the best score, with intervals."""
    if taus is None:
        top = float(np.nanmax(scores.to_numpy())) if len(scores) else 1.0
        low = min(0.0, float(np.nanmin(scores.to_numpy()))) if len(scores) else 0.0
        taus = np.linspace(low, max(top, low + 1e-9), points)
    rows = []
    for variant, values in scores.groupby(level="variant", sort=True):
        x = values.dropna().to_numpy(dtype=float)
        seeds = _seeds_text(values.dropna().index.get_level_values("seed"))
        # one row per seed, one column per tau: resampling rows resamples whole seeds
        frac, low, high = boot.interval([(x[:, None] > taus).astype(float)], np.mean)
        rows += [
            {
                "variant": variant,
                "tau": float(t),
                "fraction": float(f),
                "ci_low": float(lo),
                "ci_high": float(hi),
                "n_seeds": int(x.size),
                "seeds": seeds,
                **boot.columns(),
            }
            for t, f, lo, hi in zip(taus, frac, low, high, strict=True)
        ]
    return pd.DataFrame(rows)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = 0) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 for a score of X's and one of Y's drawn at random: the
    Mann-Whitney U statistic over n x m (rliable's probability_of_improvement, one task)."""
    u = stats.mannwhitneyu(x, y, alternative="greater", axis=axis, method="asymptotic")
    return u.statistic / (np.shape(x)[axis] * np.shape(y)[axis])


def compare(scores: pd.Series, pair: Sequence[str], boot: Bootstrap, quantity: str):
    """The probability that variant pair[0] improves on pair[1], with its interval (the two
    variants' seeds resampled independently)."""
    x_name, y_name = pair
    x = scores.xs(x_name, level="variant").dropna()
    y = scores.xs(y_name, level="variant").dropna()
    p, low, high = boot.interval(
        [x.to_numpy(dtype=float), y.to_numpy(dtype=float)], probability_of_improvement
    )
    return pd.DataFrame(
        [
            {
                "x": x_name,
                "y": y_name,
                "quantity": quantity,
                "probability_of_improvement": float(p),
                "ci_low": float(low),
                "ci_high": float(high),
                "n_seeds_x": int(x.size),
                "seeds_x": _seeds_text(x.index),
                "n_seeds_y": int(y.size),
                "seeds_y": _seeds_text(y.index),
                **boot.columns(),
            }
        ]
    )


COMPARISON_COLUMNS = ["x", "y", "quantity", "probability_of_improvement", "ci_low", "ci_high"]


def comparison_pair(requested: Sequence[str] | None, variants: Sequence[str]) -> list[str] | None:
    """The pair to compare: the configured one, else the first two variants (None: one)."""
    if requested:
        missing = [v for v in requested if v not in variants]
        if missing:
            raise ValueError(
                f"aggregate.compare names the variant '{missing[0]}', but the tables hold only "
                f"{list(variants)}. Run that variant, or compare two of those."
            )
        return list(requested)
    return list(variants[:2]) if len(variants) >= 2 else None


def ppo_tables(
    train: pd.DataFrame,
    train_eval: pd.DataFrame,
    episodes: pd.DataFrame,
    section: dict,
    variant_order: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every across-seed table of the PPO study from its tidy per-seed tables and the
    config's `aggregate` section: file stem -> table."""
    boot = Bootstrap.from_config(section)
    present = sorted(episodes["variant"].unique())
    order = [v for v in (variant_order or []) if v in present] + [
        v for v in present if v not in (variant_order or [])
    ]
    scores = final_eval_returns(episodes)
    thresholds = threshold_table(train, train_eval, episodes, section["threshold"])
    pair = comparison_pair(section["compare"], order)
    comparison = pd.DataFrame(columns=COMPARISON_COLUMNS)
    if pair:
        # fewer frames or seconds to the threshold is better; never reaching it, worst
        to_threshold = thresholds.set_index(["variant", "seed"])
        comparison = pd.concat(
            [compare(scores, pair, boot, "eval_return")]
            + [
                compare(-to_threshold[q].fillna(np.inf), pair, boot, q)
                for q in ("frames_to_threshold", "seconds_to_threshold")
            ],
            ignore_index=True,
        )
    return {
        "ppo_train_curves": summarise_curves(
            train, "frames", ["train_reward_mean", "train_max_episode_length"], boot
        ),
        "ppo_train_eval_curves": summarise_curves(
            train_eval, "frames", ["eval_return", "eval_episode_length"], boot
        ),
        "ppo_summary": final_summary(train, train_eval, episodes, boot, section["threshold"]),
        "ppo_frames_to_threshold": thresholds,
        "ppo_performance_profile": performance_profile(scores, boot, section["profile_points"]),
        "ppo_comparison": comparison,
    }


def pendulum_per_seed(
    train: pd.DataFrame, evals: pd.DataFrame, last: int = 10
) -> dict[str, pd.Series]:
    """Each pendulum seed's final-step reward and return (its mean over its `last`
    iterations, the tutorial's yardstick), training speed, and the controller evaluation
    (return from the fixed starts, distance from upright at their last step)."""
    keys = ["variant", "seed"]
    tail = train.sort_values("iteration").groupby(keys).tail(last).groupby(keys)
    final = evals[evals["step"] == evals["step"].max()].groupby(keys)
    return {
        "final_step_reward": tail["final_step_reward"].mean(),
        "final_return": tail["return"].mean(),
        "iters_per_s": train.groupby(keys)["iters_per_s"].median(),
        "eval_return": evals.groupby([*keys, "start"])["reward"].sum().groupby(keys).mean(),
        "eval_final_abs_angle": final["angle"].apply(lambda a: a.abs().mean()),
    }


def pendulum_summary(
    train: pd.DataFrame, evals: pd.DataFrame, boot: Bootstrap, last: int = 10
) -> pd.DataFrame:
    """The pendulum study across seeds (pendulum_per_seed's quantities)."""
    return summarise_per_seed(pendulum_per_seed(train, evals, last), boot)
