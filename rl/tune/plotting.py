"""The search figure: optimisation history, parameter importances and the slices of the
two most important keys, drawn from the trials table alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from rl.analysis.plotting import save_figure  # noqa: E402

STATES = {"complete": ("o", "tab:blue"), "pruned": ("x", "tab:orange"), "fail": ("s", "tab:red")}


def _scatter(ax, table: pd.DataFrame, x: str) -> None:
    """The objective per trial, by state, on a log scale (misses score up to 2x budget)."""
    for state, (marker, colour) in STATES.items():
        rows = table[table["state"] == state]
        if len(rows):
            ax.scatter(rows[x], rows["value"], marker=marker, color=colour, s=22, label=state)
    ax.set_yscale("log")


def _history(ax, table: pd.DataFrame, budget: int, threshold: float) -> None:
    _scatter(ax, table, "number")
    done = table[table["state"] == "complete"].sort_values("number")
    if len(done):
        ax.step(done["number"], done["value"].cummin(), where="post", color="black", label="best")
    ax.axhline(budget, color="grey", linestyle="--", linewidth=1)
    ax.text(0, budget, " budget (above: never reached)", va="bottom", fontsize="x-small")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"frames to return >= {threshold:g} (log)")
    ax.set_title("Optimisation history")
    ax.legend(fontsize="x-small", loc="center right")


def _importances(ax, ranked: pd.DataFrame) -> None:
    if ranked.empty:
        ax.text(0.5, 0.5, "fewer than two complete trials", ha="center", transform=ax.transAxes)
    else:
        rows = ranked.iloc[::-1]
        ax.barh(rows["key"], rows["importance"], color="tab:blue")
    ax.set_xlabel("fANOVA importance")
    ax.set_title("Parameter importances")


def _slice(ax, table: pd.DataFrame, item: dict, budget: int) -> None:
    key = item["key"]
    _scatter(ax, table, key)
    if item.get("log"):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axhline(budget, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel(key)
    ax.set_ylabel("objective (frames, log)")
    ax.set_title(f"Slice: {key}")


def search_figure(cfg: dict, table: pd.DataFrame, ranked: pd.DataFrame, png, pdf) -> None:
    sns.set_theme(context="paper", style="whitegrid")
    p, tune = cfg["plot"], cfg["tune"]
    fig, axes = plt.subplots(
        2, 2, figsize=(p["width_in"], p["height_in"]), dpi=p["dpi"], constrained_layout=True
    )
    budget = cfg["ppo"]["total_frames"]
    _history(axes[0, 0], table, budget, tune["threshold"])
    _importances(axes[0, 1], ranked)
    items = {item["key"]: item for item in tune["space"]}
    top = [k for k in ranked["key"] if k in items] or list(items)
    for ax, key in zip(axes[1], (top + top)[:2], strict=True):
        _slice(ax, table, items[key], budget)
    n = table["state"].value_counts()
    fig.suptitle(
        f"Search '{cfg['study']}': {len(table)} trials "
        f"({n.get('complete', 0)} complete, {n.get('pruned', 0)} pruned, {n.get('fail', 0)} failed)"
    )
    save_figure(fig, png, pdf)
