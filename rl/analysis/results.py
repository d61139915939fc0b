"""A study's across-seed tables and figures, from its tidy per-seed tables alone.

The aggregate and plot stages, `figures` (rebuilding them from a reference result) and the
tests call these; each takes the config and folders and writes its files atomically.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rl.analysis import aggregation as agg
from rl.compare.results import REFERENCE_FILES as COMPARE_FILES
from rl.core.config import variant_names
from rl.core.files import write_csv

PPO_TIDY = {
    # file stem -> the columns every per-seed table must have
    "ppo_train": ["variant", "seed", "frames", "train_reward_mean"],
    "ppo_train_eval": ["variant", "seed", "frames", "eval_return"],
    "ppo_eval_episodes": ["variant", "seed", "return", "length"],
}


def aggregate_ppo(cfg: dict, tidy: dict, out: Path, write_tidy: bool = True):
    """Write the across-seed tables of the PPO study from its tidy per-seed tables."""

    if write_tidy:
        for stem, frame in tidy.items():
            write_csv(out / f"{stem}.csv", frame)
    tables = agg.ppo_tables(
        tidy["ppo_train"],
        tidy["ppo_train_eval"],
        tidy["ppo_eval_episodes"],
        cfg["aggregate"],
        variant_order=variant_names(cfg, "ppo"),
    )
    for stem, frame in tables.items():
        write_csv(out / f"{stem}.csv", frame)
    return tables


def _read_agg(agg_dir: Path, name: str, rule: str):

    path = agg_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing aggregate table '{path}'. Run the {rule} rule (or `python -m rl "
            f"figures --from <reference folder>` on a reference result)."
        )
    return pd.read_csv(path)


def plot_ppo(cfg: dict, agg_dir: Path, png, pdf, stats_png, stats_pdf) -> None:
    """The PPO four-panel figure and the statistics figure, from the aggregate tables."""
    from rl.analysis import plotting  # matplotlib: only where figures are drawn

    def read(name):
        return _read_agg(agg_dir, name, "aggregate")

    tables = {"train": read("ppo_train.csv"), "train_eval": read("ppo_train_eval.csv")}
    curves = {
        "train": read("ppo_train_curves.csv"),
        "train_eval": read("ppo_train_eval_curves.csv"),
    }
    p = cfg["plot"]
    size, dpi = (p["width_in"], p["height_in"]), p["dpi"]
    order = variant_names(cfg, "ppo")
    fig = plotting.ppo_figure(
        tables, curves, f"PPO on {cfg['env']['id']} ({cfg['study']})", size, dpi, order
    )
    plotting.save_figure(fig, png, pdf)
    fig = plotting.statistics_figure(
        read("ppo_summary.csv"),
        read("ppo_performance_profile.csv"),
        read("ppo_comparison.csv"),
        read("ppo_frames_to_threshold.csv"),
        f"Final evaluation return across seeds ({cfg['study']})",
        size,
        dpi,
        order,
    )
    plotting.save_figure(fig, stats_png, stats_pdf)


PENDULUM_TRAIN_COLUMNS = ["variant", "seed", "iteration", "return", "final_step_reward"]
PENDULUM_EVAL_COLUMNS = ["variant", "seed", "start", "time_s", "angle", "torque", "reward"]


PENDULUM_TIDY = {"train": PENDULUM_TRAIN_COLUMNS, "eval_trajectories": PENDULUM_EVAL_COLUMNS}


def aggregate_pendulum(cfg: dict, tidy: dict, out: Path, write_tidy: bool = True):
    """Write the across-seed tables of the pendulum study from its tidy per-seed tables."""

    boot = agg.Bootstrap.from_config(cfg["aggregate"])
    train, evals = tidy["train"], tidy["eval_trajectories"].copy()
    evals["abs_angle"] = evals["angle"].abs()  # averages across seeds without the wrap at pi
    if write_tidy:
        write_csv(out / "train.csv", train)
        write_csv(out / "eval_trajectories.csv", evals)
    tables = {
        "train_curves": agg.summarise_curves(
            train, "iteration", ["return", "final_step_reward", "grad_norm"], boot
        ),
        "eval_curves": agg.summarise_curves(
            evals,
            "time_s",
            ["abs_angle", "angle", "speed", "torque"],
            boot,
            groups=("variant", "start"),
        ),
        "summary": agg.pendulum_summary(train, evals, boot),
    }
    for stem, frame in tables.items():
        write_csv(out / f"{stem}.csv", frame)
    return tables


def plot_pendulum(cfg: dict, agg_dir: Path, png, pdf) -> None:
    """The pendulum four-panel figure, from the aggregate tables."""
    from rl.analysis import plotting

    def read(name):
        return _read_agg(agg_dir, name, "aggregate_pendulum")

    tables = {"train": read("train.csv"), "eval": read("eval_trajectories.csv")}
    curves = {"train": read("train_curves.csv"), "eval": read("eval_curves.csv")}
    p = cfg["plot"]
    fig = plotting.pendulum_figure(
        tables,
        curves,
        f"Pendulum swing-up, policy trained through the simulator ({cfg['study']})",
        (p["width_in"], p["height_in"]),
        p["dpi"],
    )
    plotting.save_figure(fig, png, pdf)


REFERENCE_FILES = [
    # what a reference result holds: the tidy per-seed tables (the inputs of `figures`), the
    # statistics and figures made from them, and the provenance of each folder
    "config.yaml",
    "aggregate/ppo_train.csv",
    "aggregate/ppo_train_eval.csv",
    "aggregate/ppo_eval_episodes.csv",
    "aggregate/pendulum/train.csv",
    "aggregate/pendulum/eval_trajectories.csv",
    "tune/trials.csv",  # a tuning study's search
    *COMPARE_FILES,
]
