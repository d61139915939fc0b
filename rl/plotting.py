"""Four-panel result figures from the aggregate tables alone (no retraining)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from rl.files import atomic_path  # noqa: E402

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
    for variant, group in tidy.groupby("variant"):
        colour = palette[variant]
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


def ppo_figure(
    tables: dict[str, pd.DataFrame],
    curves: dict[str, pd.DataFrame],
    title: str,
    size: tuple[float, float],
    dpi: int,
) -> plt.Figure:
    sns.set_theme(context="paper", style="whitegrid")
    variants = sorted(tables["train"]["variant"].unique())
    palette = dict(zip(variants, sns.color_palette("colorblind", len(variants)), strict=True))
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


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    plt.close(fig)
