"""The comparison's figures, from its aggregate tables alone: the four-panel comparison
(return against simulator steps and against wall-clock seconds, the distribution of final
returns, the probability of improvement by budget) and the gradient probe."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from rl.analysis.plotting import variant_palette  # noqa: E402


def steps_text(steps: float) -> str:
    """10000 -> '10k', 1500000 -> '1.5M', 512 -> '512'."""
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if steps >= size:
            return f"{steps / size:g}{unit}"
    return f"{steps:g}"


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _label(variant: str, method: str) -> str:
    return variant if variant == method else f"{variant} ({method})"


def _curve_panel(ax, curves, scores, axis, palette, thresholds) -> None:
    """IQM across seeds with its band, each seed faint, the thresholds dashed."""
    for variant, colour in palette.items():
        band = curves[(curves["variant"] == variant) & (curves["axis"] == axis)]
        band = band[band["x"] > 0].sort_values("x")
        if not len(band):
            continue
        if axis != "wall_s":  # seeds' own snapshots (on the wall grid they are the band's)
            for _, run in scores[scores["variant"] == variant].groupby("seed"):
                run = run[run[axis] > 0].sort_values(axis)
                ax.plot(run[axis], run["score"], color=colour, alpha=0.2, linewidth=0.6)
        method = band["method"].iloc[0]
        n = int(band["n_seeds"].max())
        label = f"{_label(variant, method)}: IQM of {n} seeds, 95% CI"
        ax.plot(band["x"], band["iqm"], color=colour, linewidth=2, label=label)
        ax.fill_between(
            band["x"], band["iqm_ci_low"], band["iqm_ci_high"], color=colour, alpha=0.25
        )
    for t in thresholds:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    _log_x(ax)
    ax.set_ylabel("evaluation return (200 steps)")


def _profile_panel(ax, profile: pd.DataFrame, scores: pd.DataFrame, palette: dict) -> None:
    # each seed's last snapshot, in (variant, seed) order: sorting by sim_steps alone leaves
    # the seeds' ties in whatever order the CPU's sort kernel gives, and the ticks' drawing
    # order (the PDF's bytes) with them
    last = scores.sort_values(["variant", "seed", "sim_steps"]).groupby(["variant", "seed"]).tail(1)
    for i, (variant, colour) in enumerate(palette.items()):
        band = profile[profile["variant"] == variant].sort_values("tau")
        ax.plot(band["tau"], band["fraction"], color=colour, label=variant)
        ax.fill_between(band["tau"], band["ci_low"], band["ci_high"], color=colour, alpha=0.2)
        dots = last.loc[last["variant"] == variant, "score"]
        ax.plot(dots, np.full(len(dots), -0.04 - 0.04 * i), "|", color=colour, markersize=8)
    ax.set_xlabel(r"final evaluation return $\tau$")
    ax.set_ylabel(r"fraction of seeds > $\tau$")
    ax.set_title("Final returns: performance profile (ticks: seeds)")
    ax.legend(fontsize="x-small", loc="lower left")


def _improvement_panel(ax, improvement: pd.DataFrame) -> None:
    if not len(improvement):
        ax.text(0.5, 0.5, "one variant: nothing to compare", ha="center", va="center")
        return
    rows = improvement.reset_index(drop=True)
    labels = ["end" if np.isnan(b) else steps_text(b) for b in rows["budget_steps"]]
    p = rows["probability_of_improvement"].to_numpy()
    err = [p - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - p]
    ax.errorbar(range(len(rows)), p, yerr=err, fmt="o", color="black", capsize=4)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylim(-0.02, 1.02)
    first = rows.iloc[0]
    ax.set_ylabel(f"P({first['x']} > {first['y']})")
    ax.set_xlabel("simulator-step budget (both methods)")
    ax.set_title("Probability of improvement, 95% CI")


def comparison_figure(
    tables: dict[str, pd.DataFrame],
    thresholds,
    title: str,
    size: tuple[float, float],
    dpi: int,
    order: list[str] | None = None,
) -> plt.Figure:
    """Return against simulator steps and against seconds (IQM across seeds, 95% band,
    seeds faint, thresholds dashed), the final returns' performance profile, and the
    probability of improvement at each budget."""
    sns.set_theme(context="paper", style="whitegrid")
    palette = variant_palette(tables["scores"]["variant"].unique(), order)
    fig, axes = plt.subplots(2, 2, figsize=size, dpi=dpi, constrained_layout=True)
    curves, scores = tables["curves"], tables["scores"]
    _curve_panel(axes[0, 0], curves, scores, "sim_steps", palette, thresholds)
    axes[0, 0].set_xlabel("simulator steps (PPO frames; BPTT batch x horizon)")
    axes[0, 0].set_title("Return against simulator steps")
    axes[0, 0].legend(loc="lower right", fontsize="xx-small")
    _curve_panel(axes[0, 1], curves, scores, "wall_s", palette, thresholds)
    axes[0, 1].set_xlabel("training wall-clock seconds (1 CPU thread)")
    axes[0, 1].set_title("Return against wall-clock time")
    _profile_panel(axes[1, 0], tables["profile"], scores, palette)
    _improvement_panel(axes[1, 1], tables["improvement"])
    fig.suptitle(title)
    return fig


GRADIENT_PANELS = [
    ("grad_norm", "Gradient norm", "||grad|| (log)"),
    ("grad_cosine", "Agreement of independent estimates", "mean pairwise cosine"),
    ("clamped_fraction", "Clamped torques in the rollouts", "share of steps |u| > max"),
]


def gradient_figure(gradients, scores, size, dpi, order, study: str) -> plt.Figure:
    """The BPTT gradient probe against the rollout horizon, one line per budget (mean
    across seeds, 95% band), and the clamped share of the evaluation actions against
    simulator steps."""
    sns.set_theme(context="paper", style="whitegrid")
    fig, axes = plt.subplots(2, 2, figsize=size, dpi=dpi, constrained_layout=True)
    for ax, (metric, panel_title, ylabel) in zip(axes.flat, GRADIENT_PANELS, strict=False):
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("rollout horizon (steps)")
        if gradients is None:
            continue
        rows = gradients[gradients["metric"] == metric]
        budgets = sorted(rows["sim_steps"].unique())
        colours = dict(zip(budgets, sns.color_palette("viridis", len(budgets)), strict=True))
        styles = dict(
            zip(sorted(rows["variant"].unique()), ["-", "--", ":", "-."] * 4, strict=False)
        )
        for (variant, steps), band in rows.groupby(["variant", "sim_steps"], sort=True):
            band = band.sort_values("horizon")
            label = f"{variant} at {steps_text(steps)} steps"
            colour = colours[steps]
            ax.plot(
                band["horizon"],
                band["mean"],
                marker="o",
                linestyle=styles[variant],
                color=colour,
                label=label,
            )
            ax.fill_between(
                band["horizon"], band["ci_low"], band["ci_high"], color=colour, alpha=0.2
            )
        _log_x(ax)
        horizons = sorted(rows["horizon"].unique())
        ax.set_xticks(horizons, [f"{h:g}" for h in horizons])
    axes[0, 0].set_yscale("log")
    axes[0, 0].legend(fontsize="xx-small", loc="upper left")
    palette = variant_palette(scores["variant"].unique(), order)
    ax = axes[1, 1]
    for variant, colour in palette.items():
        runs = scores[(scores["variant"] == variant) & (scores["sim_steps"] > 0)]
        for _, run in runs.groupby("seed"):
            ax.plot(run["sim_steps"], run["clamped_fraction"], color=colour, alpha=0.5, lw=0.8)
        ax.plot([], [], color=colour, label=variant)
    _log_x(ax)
    ax.set_title("Clamped actions, evaluation episodes")
    ax.set_xlabel("simulator steps")
    ax.set_ylabel("share of steps outside the bounds")
    ax.legend(fontsize="x-small")
    fig.suptitle(f"Where the gradient method can fail: the BPTT gradient ({study})")
    return fig
