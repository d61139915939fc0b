"""The comparison's across-seed tables and figures, from its tidy per-seed tables alone.

The aggregate_compare and plot_compare stages and `figures` (rebuilding a reference
result) call these; each takes the config and folders and writes its files atomically.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rl.analysis import aggregation as agg
from rl.compare import statistics as stats
from rl.core.config import variant_names
from rl.core.files import write_csv

TIDY = {
    # file stem -> the columns every per-seed table must have
    "episodes": ["variant", "seed", "method", "sim_steps", "grad_steps", "wall_s", "return"],
    "gradients": ["variant", "seed", "sim_steps", "horizon", "grad_norm", "grad_cosine"],
}
GRADIENT_METRICS = ["grad_norm", "grad_cosine", "clamped_fraction", "loss"]
REFERENCE_FILES = ["aggregate/compare/episodes.csv", "aggregate/compare/gradients.csv"]


def tables(cfg: dict, tidy: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every across-seed table of the comparison: file stem -> table."""
    boot = agg.Bootstrap.from_config(cfg["aggregate"])
    c = cfg["compare"]
    scores = stats.seed_scores(tidy["episodes"])
    pair = stats.pair_of(c["pair"], variant_names(cfg))
    cross = stats.crossings(scores, c["thresholds"])
    out = {
        "scores": scores,
        "curves": stats.curves(scores, boot, c["wall_points"]),
        "summary": stats.summary(scores, c["budgets"], boot),
        "profile": stats.profile(scores, boot, c["profile_points"]),
        "improvement": stats.improvement(scores, pair, c["budgets"], boot),
        "crossings": cross,
        "crossing_summary": stats.crossing_summary(cross, boot),
        "first_to_threshold": stats.first_to(cross, pair, boot),
    }
    if len(tidy["gradients"]):
        out["gradient_curves"] = agg.summarise_curves(
            tidy["gradients"], "horizon", GRADIENT_METRICS, boot, groups=("variant", "sim_steps")
        )
    return out


def aggregate_compare(cfg: dict, tidy: dict, out: Path, write_tidy: bool = True) -> dict:
    """Write the comparison's tables (and, with write_tidy, its tidy inputs) into `out`."""
    if write_tidy:
        for stem, frame in tidy.items():
            write_csv(out / f"{stem}.csv", frame)
    made = tables(cfg, tidy)
    for stem, frame in made.items():
        write_csv(out / f"{stem}.csv", frame)
    return made


def read_tidy(paths: dict[str, list]) -> dict[str, pd.DataFrame]:
    """The tidy tables from per-seed files (`paths`: stem -> files; gradients may be none)."""
    tidy = {"episodes": agg.read_tables(paths["episodes"], TIDY["episodes"])}
    grads = paths.get("gradients") or []
    tidy["gradients"] = (
        agg.read_tables(grads, TIDY["gradients"])
        if grads
        else pd.DataFrame(columns=TIDY["gradients"])
    )
    return tidy


FIGURES = ("compare.png", "compare.pdf", "gradients.png", "gradients.pdf")


def plot_compare(cfg: dict, agg_dir: Path, png, pdf, gradients_png, gradients_pdf) -> None:
    """The four-panel comparison figure and the gradient-probe figure, from the tables."""
    from rl.analysis.plotting import save_figure
    from rl.compare import plotting

    def read(name):
        path = agg_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"Missing comparison table '{path}'. Run the aggregate_compare rule (or "
                f"`python -m rl figures --from <reference folder>`)."
            )
        return pd.read_csv(path)

    p = cfg["plot"]
    size, dpi, order = (p["width_in"], p["height_in"]), p["dpi"], variant_names(cfg)
    names = {k: read(k) for k in ("curves", "scores", "profile", "improvement")}
    title = f"PPO and BPTT on gymnasium Pendulum-v1 ({cfg['study']})"
    fig = plotting.comparison_figure(names, cfg["compare"]["thresholds"], title, size, dpi, order)
    save_figure(fig, png, pdf)
    gradients = read("gradient_curves") if (agg_dir / "gradient_curves.csv").is_file() else None
    fig = plotting.gradient_figure(gradients, names["scores"], size, dpi, order, cfg["study"])
    save_figure(fig, gradients_png, gradients_pdf)


def rebuild(cfg: dict, src: Path, out: Path) -> list[Path]:
    """`figures` for a comparison: its tables and figures from the tidy tables under `src`."""
    tidy = {}
    for stem, cols in TIDY.items():
        path = src / "aggregate" / "compare" / f"{stem}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"'{path}' is missing: `figures` needs the comparison's tidy tables "
                f"({', '.join(REFERENCE_FILES)}) under '{src}'."
            )
        tidy[stem] = agg.read_tables([path], cols)
    aggregate_compare(cfg, tidy, out / "aggregate" / "compare", write_tidy=out != src)
    made = [out / "figures" / "compare" / name for name in FIGURES]
    plot_compare(cfg, out / "aggregate" / "compare", *made)
    return made
