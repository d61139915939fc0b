"""Four-panel result figures from the aggregate tables alone (no retraining)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from rl.core.files import atomic_path  # noqa: E402

PPO_PANELS = [
    # (tidy table, metric column, title, y label)
    ("train", "train_reward_mean", "Training reward (batch mean)", "reward per step"),
    ("train", "train_max_episode_length", "Max episode length (training)", "steps"),
    ("train_eval", "eval_return", "Evaluation return (deterministic)", "return"),
    ("train_eval", "eval_episode_length", "Evaluation episode length", "steps"),
]


def _panel(
    ax, tidy: pd.DataFrame, curves: pd.DataFrame, metric: str, palette: dict, x: str = "frames"
) -> None:
    for variant, colour in palette.items():
        group = tidy[tidy["variant"] == variant]
        sns.lineplot(
            data=group,
            x=x,
            y=metric,
            units="seed",
            estimator=None,
            color=colour,
            alpha=0.25,
            linewidth=0.8,
            ax=ax,
            legend=False,
        )
        band = curves[(curves["variant"] == variant) & (curves["metric"] == metric)]
        band = band.sort_values(x)
        n = int(band["n_seeds"].max()) if len(band) else 0
        ax.plot(
            band[x],
            band["mean"],
            color=colour,
            linewidth=2,
            label=f"{variant} (mean of {n} seeds, 95% CI)",
        )
        ax.fill_between(band[x], band["ci_low"], band["ci_high"], color=colour, alpha=0.25)


def variant_palette(present, order=None) -> dict:
    """One colour per variant, in config order (the same colour in every figure)."""
    order = [v for v in (order or []) if v in set(present)]
    variants = order + sorted(v for v in set(present) if v not in order)
    return dict(zip(variants, sns.color_palette("colorblind", len(variants)), strict=True))


def ppo_figure(
    tables: dict[str, pd.DataFrame],
    curves: dict[str, pd.DataFrame],
    title: str,
    size: tuple[float, float],
    dpi: int,
    order: list[str] | None = None,
) -> plt.Figure:
    """The tutorial's four panels, the variants overlaid: each seed faint, the mean across
    seeds bold with its 95% bootstrap band, one colour per variant."""
    sns.set_theme(context="paper", style="whitegrid")
    palette = variant_palette(tables["train"]["variant"].unique(), order)
    fig, axes = plt.subplots(2, 2, figsize=size, dpi=dpi, sharex=True, constrained_layout=True)
    for ax, (table, metric, panel_title, ylabel) in zip(axes.flat, PPO_PANELS, strict=True):
        _panel(ax, tables[table], curves[table], metric, palette)
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("environment frames")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    axes.flat[0].legend(loc="lower right", fontsize="x-small")
    fig.suptitle(title)
    return fig


PENDULUM_TRAIN_PANELS = [
    # (metric column, title, y label)
    ("return", "Training return", "return per rollout"),
    ("final_step_reward", "Final-step reward (training)", "reward"),
]
PENDULUM_EVAL_PANELS = [
    ("abs_angle", "Learned controller: angle", "|angle| from upright (rad)"),
    ("torque", "Learned controller: torque", "torque (N m)"),
]


def _start_label(row) -> str:
    return f"$\\theta_0$={row['start_angle']:.2g}, $\\dot\\theta_0$={row['start_speed']:.2g}"


def _trajectory_panel(
    ax, evals: pd.DataFrame, curves: pd.DataFrame, metric: str, styles: dict
) -> list:
    """One colour per start state: each seed faint, the across-seed mean and its band."""
    handles = []
    starts = evals.drop_duplicates("start").sort_values("start")
    colours = sns.color_palette("colorblind", len(starts))
    for colour, (_, start) in zip(colours, starts.iterrows(), strict=True):
        for variant, linestyle in styles.items():
            seeds = evals[(evals["start"] == start["start"]) & (evals["variant"] == variant)]
            for _, one in seeds.groupby("seed"):
                ax.plot(one["time_s"], one[metric], color=colour, alpha=0.25, linewidth=0.6)
            band = curves[
                (curves["start"] == start["start"])
                & (curves["variant"] == variant)
                & (curves["metric"] == metric)
            ].sort_values("time_s")
            (line,) = ax.plot(
                band["time_s"],
                band["mean"],
                color=colour,
                linestyle=linestyle,
                linewidth=1.5,
                label=_start_label(start) + ("" if len(styles) == 1 else f" ({variant})"),
            )
            ax.fill_between(
                band["time_s"], band["ci_low"], band["ci_high"], color=colour, alpha=0.2
            )
            handles.append(line)
    return handles


def pendulum_figure(
    tables: dict[str, pd.DataFrame],
    curves: dict[str, pd.DataFrame],
    title: str,
    size: tuple[float, float],
    dpi: int,
) -> plt.Figure:
    """Training return and final-step reward against iterations (mean across seeds with a
    bootstrap band, seeds faint), and the learned controller's angle and torque over time
    from the fixed starting states (one colour per start)."""
    sns.set_theme(context="paper", style="whitegrid")
    variants = sorted(tables["train"]["variant"].unique())
    palette = dict(zip(variants, sns.color_palette("colorblind", len(variants)), strict=True))
    styles = dict(zip(variants, ["-", "--", ":", "-."] * len(variants), strict=False))
    fig, axes = plt.subplots(2, 2, figsize=size, dpi=dpi, constrained_layout=True)
    for ax, (metric, panel_title, ylabel) in zip(axes[0], PENDULUM_TRAIN_PANELS, strict=True):
        _panel(ax, tables["train"], curves["train"], metric, palette, x="iteration")
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("training iteration")
    axes[0, 0].legend(loc="lower right", fontsize="x-small")
    for ax, (metric, panel_title, ylabel) in zip(axes[1], PENDULUM_EVAL_PANELS, strict=True):
        handles = _trajectory_panel(ax, tables["eval"], curves["eval"], metric, styles)
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("time (s)")
    axes[1, 0].legend(handles=handles, loc="upper right", fontsize="xx-small")
    fig.suptitle(title)
    return fig


def _ci_text(p, low, high) -> str:
    return f"{p:.2f} [{low:.2f}, {high:.2f}]"


def statistics_figure(
    summary: pd.DataFrame,
    profile: pd.DataFrame,
    comparison: pd.DataFrame,
    thresholds: pd.DataFrame,
    title: str,
    size: tuple[float, float],
    dpi: int,
    order: list[str] | None = None,
    quantity: str = "eval_return",
) -> plt.Figure:
    """The across-seed statistics of the final evaluation return (Agarwal et al. 2021):
    IQM and mean with 95% bootstrap intervals, the performance profile with its band, the
    probability of improvement of the compared pair (with one variant: training seconds to
    the threshold per seed), and frames to the threshold per seed."""
    sns.set_theme(context="paper", style="whitegrid")
    palette = variant_palette(summary["variant"].unique(), order)
    fig, axes = plt.subplots(2, 2, figsize=size, dpi=dpi, constrained_layout=True)
    rows = summary[summary["quantity"] == quantity].set_index("variant")
    names = [v for v in palette if v in rows.index]
    _iqm_panel(axes[0, 0], rows, names, palette)
    _profile_panel(axes[0, 1], profile, palette)
    if len(comparison):
        _improvement_panel(axes[1, 0], comparison)
    else:  # one variant: each seed's training time to the threshold instead
        _seconds_panel(axes[1, 0], thresholds, names, palette)
    _threshold_panel(axes[1, 1], thresholds, names, palette)
    fig.suptitle(title)
    return fig


def _iqm_panel(ax, rows: pd.DataFrame, names: list[str], palette: dict) -> None:
    for i, variant in enumerate(names):
        r = rows.loc[variant]
        for j, (stat, low, high, marker) in enumerate(
            [("iqm", "iqm_ci_low", "iqm_ci_high", "o"), ("mean", "ci_low", "ci_high", "s")]
        ):
            y = i + (0.15 if j else -0.15)
            ax.errorbar(
                r[stat],
                y,
                xerr=[[r[stat] - r[low]], [r[high] - r[stat]]],
                fmt=marker,
                color=palette[variant],
                capsize=3,
                label=stat.upper() if stat == "iqm" else stat,
            )
    ax.set_yticks(range(len(names)), [f"{v} (n={int(rows.loc[v, 'n_seeds'])})" for v in names])
    ax.set_ylim(-0.5, len(names) - 0.5)
    ax.legend(
        handles=[
            Line2D([], [], marker="o", color="black", linestyle="", label="IQM"),
            Line2D([], [], marker="s", color="black", linestyle="", label="mean"),
        ],
        fontsize="x-small",
        loc="best",
    )
    ax.set_xlabel("final evaluation return")
    ax.set_title("IQM and mean, 95% CI")


def _profile_panel(ax, profile: pd.DataFrame, palette: dict) -> None:
    for variant, colour in palette.items():
        band = profile[profile["variant"] == variant].sort_values("tau")
        ax.plot(band["tau"], band["fraction"], color=colour, label=variant)
        ax.fill_between(band["tau"], band["ci_low"], band["ci_high"], color=colour, alpha=0.2)
    ax.set_xlabel(r"return threshold $\tau$")
    ax.set_ylabel(r"fraction of seeds with return > $\tau$")
    ax.set_title("Performance profile")
    ax.legend(fontsize="x-small", loc="lower left")


IMPROVEMENT_LABELS = {
    "eval_return": "final return",
    "frames_to_threshold": "fewer frames to threshold",
    "seconds_to_threshold": "fewer seconds to threshold",
}


def _improvement_panel(ax, comparison: pd.DataFrame) -> None:
    """P(x better than y) with its interval, one row per compared quantity."""
    rows = comparison.reset_index(drop=True)
    for i, c in rows.iterrows():
        p, low, high = c["probability_of_improvement"], c["ci_low"], c["ci_high"]
        ax.errorbar(p, i, xerr=[[p - low], [high - p]], fmt="o", color="black", capsize=4)
        ax.text(p, i - 0.2, _ci_text(p, low, high), ha="center", fontsize="x-small")
    labels = [IMPROVEMENT_LABELS.get(q, q) for q in rows["quantity"]]
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize="x-small")
    ax.set_ylim(len(rows) - 0.5, -0.6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(f"P({rows['x'][0]} better than {rows['y'][0]}), 95% CI")
    ax.set_xlabel("probability (0.5 = no difference)")


def _seconds_panel(ax, thresholds: pd.DataFrame, names: list[str], palette: dict) -> None:
    """One bar per seed: the training seconds until the evaluation first reached the
    threshold; a seed that never did is named, with no bar."""
    rows = thresholds[thresholds["variant"].isin(names)].sort_values(["variant", "seed"])
    seconds = rows.get("seconds_to_threshold", pd.Series(np.nan, index=rows.index))
    labels = [f"seed {int(s)}" for s in rows["seed"]]
    y = np.arange(len(rows))
    ax.barh(y, seconds.fillna(0), color=[palette[v] for v in rows["variant"]])
    for i, value in enumerate(seconds):
        text = "not reached" if np.isnan(value) else f"{value:.3g} s"
        ax.text(0 if np.isnan(value) else value, i, f" {text}", va="center", fontsize="x-small")
    ax.set_yticks(y, labels)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    threshold = rows["threshold"].iloc[0] if len(rows) else float("nan")
    ax.set_xlabel("training seconds (wall time of the training batches)")
    ax.set_title(f"Seconds to return >= {threshold:g} (one variant: no comparison)")


def _threshold_panel(ax, thresholds: pd.DataFrame, names: list[str], palette: dict) -> None:
    reached = thresholds[thresholds["reached"].astype(bool)]
    labels = []
    for i, variant in enumerate(names):
        sub = reached[reached["variant"] == variant]
        ax.scatter(sub["frames_to_threshold"], [i] * len(sub), color=palette[variant], s=18)
        n_all = int((thresholds["variant"] == variant).sum())
        labels.append(f"{variant}\n{len(sub)}/{n_all} seeds")
    ax.set_yticks(range(len(names)), labels)
    ax.set_ylim(-0.5, len(names) - 0.5)
    if len(thresholds):
        ax.set_xlim(0, float(thresholds["frames_trained"].max()))
    threshold = thresholds["threshold"].iloc[0] if len(thresholds) else float("nan")
    ax.set_xlabel("environment frames")
    ax.set_title(f"Frames to return >= {threshold:g}")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))


# No timestamps or software strings in the files: rerunning `plot` on the same tables gives
# byte-identical figures (PDF CreationDate, PNG Software are what matplotlib would vary).
SAVE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=SAVE_METADATA[fmt])
    plt.close(fig)
