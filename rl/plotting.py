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


def _panel(ax, tidy: pd.DataFrame, curves: pd.DataFrame, metric: str, palette: dict) -> None:
    for variant, group in tidy.groupby("variant"):
        colour = palette[variant]
        sns.lineplot(
            data=group,
            x="frames",
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
        band = band.sort_values("frames")
        n = int(band["n_seeds"].max()) if len(band) else 0
        ax.plot(
            band["frames"],
            band["mean"],
            color=colour,
            linewidth=2,
            label=f"{variant} (mean of {n} seeds, 95% CI)",
        )
        ax.fill_between(band["frames"], band["ci_low"], band["ci_high"], color=colour, alpha=0.25)


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


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    plt.close(fig)
