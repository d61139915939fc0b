"""The verbs that combine seeds and draw: aggregate, plot, aggregate-pendulum, plot-pendulum
(one rule each), and the tools figures, export-reference and provenance."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from rl.core import config as config_mod
from rl.core import layout, provenance
from rl.runner import STUDY, TOOL, Arg, Job, stage
from rl.tracking.sync import read_csv, summary_rows

log = logging.getLogger("rl")


def _comparison_metrics(comparison) -> dict:
    """The probability-of-improvement rows as step-0 metrics."""
    metrics = {}
    for c in comparison.to_dict("records"):
        key = f"poi.{c['x']}_vs_{c['y']}.{c['quantity']}"
        metrics[key] = c["probability_of_improvement"]
        metrics[f"{key}.ci_low"], metrics[f"{key}.ci_high"] = c["ci_low"], c["ci_high"]
    return metrics


def aggregate_rows(folder: Path) -> list[tuple[int, dict]]:
    """The across-seed summary (and comparison) of an aggregate folder as metric rows."""
    rows = summary_rows(read_csv(folder / "ppo_summary.csv"))
    rows[0][1].update(_comparison_metrics(read_csv(folder / "ppo_comparison.csv")))
    return rows


def ppo_headlines(folder: Path) -> tuple[dict, dict]:
    """For the parent runs: each seed's final evaluation return (mean and worst of its
    episodes), whether, after how many frames and training seconds it reached the
    threshold; per variant the IQM of the final return across seeds, with its interval."""
    from rl.analysis.thresholds import seconds_to_threshold

    thresholds = read_csv(folder / "ppo_frames_to_threshold.csv")
    seconds = seconds_to_threshold(thresholds, read_csv(folder / "ppo_train.csv"))
    worst = read_csv(folder / "ppo_eval_episodes.csv").groupby(["variant", "seed"])["return"].min()
    per_seed = {}
    for r in thresholds.to_dict("records"):
        key = (r["variant"], int(r["seed"]))
        per_seed[key] = {
            "final_eval_return_mean": r["final_eval_return"],
            "final_eval_return_min": worst.get(key),
            "reached_threshold": float(r["reached"]),
            "frames_to_threshold": r["frames_to_threshold"],
            "seconds_to_threshold": seconds.get(key),
        }
    summary = read_csv(folder / "ppo_summary.csv")
    study = {}
    for r in summary[summary["quantity"] == "eval_return"].to_dict("records"):
        prefix = "" if r["variant"] == layout.DEFAULT_VARIANT else f"{r['variant']}."
        for stat in ("iqm", "iqm_ci_low", "iqm_ci_high"):
            study[f"{prefix}eval_return.{stat}"] = r[stat]
    return per_seed, study


def pendulum_headlines(folder: Path) -> tuple[dict, dict]:
    """For the parent runs: each pendulum seed's final return, its controller's return from
    the fixed starts and its distance from upright at their end."""
    from rl.analysis.aggregation import pendulum_per_seed

    quantities = pendulum_per_seed(
        read_csv(folder / "train.csv"), read_csv(folder / "eval_trajectories.csv")
    )
    names = {
        "final_return": "pendulum_final_return",
        "eval_return": "pendulum_eval_return",
        "eval_final_abs_angle": "pendulum_final_abs_angle",
    }
    per_seed: dict = {}
    for quantity, name in names.items():
        for (variant, seed), value in quantities[quantity].items():
            per_seed.setdefault((variant, int(seed)), {})[name] = value
    return per_seed, {}


@stage(
    "aggregate",
    "tidy tables and bootstrap CIs across seeds",
    Arg("--train", nargs="+", required=True, help="per-seed train_metrics.csv"),
    Arg("--train-eval", nargs="+", required=True, help="per-seed train_eval.csv"),
    Arg("--episodes", nargs="+", required=True, help="per-seed episodes.csv"),
    Arg("--out-dir", required=True),
    kind=STUDY,
    artifacts=("ppo_*.csv", "provenance.json"),
    rows=aggregate_rows,
    parents=ppo_headlines,
)
def aggregate(job: Job) -> None:
    from rl.analysis import aggregation as agg
    from rl.analysis.results import PPO_TIDY, aggregate_ppo

    args = job.args
    given = {"ppo_train": args.train, "ppo_train_eval": args.train_eval}
    given["ppo_eval_episodes"] = args.episodes
    tidy = {stem: agg.read_tables(given[stem], cols) for stem, cols in PPO_TIDY.items()}
    out = Path(args.out_dir)
    tables = aggregate_ppo(job.cfg, tidy, out)
    seeds = sorted(tidy["ppo_train"]["seed"].unique().tolist())
    inputs = [*args.train, *args.train_eval, *args.episodes]
    job.finish(out, rows=aggregate_rows(out), inputs=inputs, extra={"seeds": seeds})
    columns = ["variant", "quantity", "mean", "ci_low", "ci_high", "iqm"]
    log.info(
        "aggregated %d seeds:\n%s\n%s",
        len(seeds),
        tables["ppo_summary"][columns].to_string(index=False),
        tables["ppo_comparison"].to_string(index=False),
    )


@stage(
    "plot",
    "four-panel PPO figure (PNG and PDF) and the statistics figure, from aggregate tables",
    Arg("--agg-dir", required=True),
    Arg("--png", required=True),
    Arg("--pdf", required=True),
    Arg("--stats-png", required=True, help="statistics figure (IQM, profile, PoI)"),
    Arg("--stats-pdf", required=True),
    kind=STUDY,
    artifacts=("*.png", "*.pdf", "provenance.json"),
)
def plot(job: Job) -> None:
    from rl.analysis.results import plot_ppo

    args, agg_dir = job.args, Path(job.args.agg_dir)
    plot_ppo(job.cfg, agg_dir, args.png, args.pdf, args.stats_png, args.stats_pdf)
    job.finish(Path(args.png).parent, inputs=sorted(agg_dir.glob("ppo_*.csv")))
    log.info("figures -> %s, %s, %s, %s", args.png, args.pdf, args.stats_png, args.stats_pdf)


@stage(
    "aggregate_pendulum",
    "pendulum tables and bootstrap CIs across seeds",
    Arg("--train", nargs="+", required=True, help="per-seed train_metrics.csv"),
    Arg("--evals", nargs="+", required=True, help="per-seed eval_trajectories.csv"),
    Arg("--out-dir", required=True),
    kind=STUDY,
    artifacts=("*.csv", "provenance.json"),
    rows=lambda folder: summary_rows(read_csv(folder / "summary.csv")),
    parents=pendulum_headlines,
)
def aggregate_pendulum(job: Job) -> None:
    from rl.analysis import aggregation as agg
    from rl.analysis.results import PENDULUM_TIDY, aggregate_pendulum

    args = job.args
    given = {"train": args.train, "eval_trajectories": args.evals}
    tidy = {stem: agg.read_tables(given[stem], cols) for stem, cols in PENDULUM_TIDY.items()}
    out = Path(args.out_dir)
    summary = aggregate_pendulum(job.cfg, tidy, out)["summary"]
    seeds = sorted(tidy["train"]["seed"].unique().tolist())
    inputs = [*args.train, *args.evals]
    job.finish(out, rows=summary_rows(summary), inputs=inputs, extra={"seeds": seeds})
    columns = ["variant", "quantity", "mean", "ci_low", "ci_high", "per_seed"]
    log.info(
        "aggregated %d pendulum seeds:\n%s", len(seeds), summary[columns].to_string(index=False)
    )


@stage(
    "plot_pendulum",
    "four-panel pendulum figure (PNG and PDF)",
    Arg("--agg-dir", required=True),
    Arg("--png", required=True),
    Arg("--pdf", required=True),
    kind=STUDY,
    artifacts=("*.png", "*.pdf", "provenance.json"),
)
def plot_pendulum(job: Job) -> None:
    from rl.analysis.results import plot_pendulum

    args, agg_dir = job.args, Path(job.args.agg_dir)
    plot_pendulum(job.cfg, agg_dir, args.png, args.pdf)
    job.finish(Path(args.png).parent, inputs=sorted(agg_dir.glob("*.csv")))
    log.info("figure -> %s, %s", args.png, args.pdf)


def _read_tidy(src: Path, rel: str, cols):
    from rl.analysis.results import REFERENCE_FILES

    path = src / rel
    if not path.is_file():
        raise FileNotFoundError(
            f"'{path}' is missing: `figures` needs the tidy per-seed tables of a study "
            f"({', '.join(REFERENCE_FILES)}) under '{src}'. Make them with the workflow "
            f"(results/<study>/) or `python -m rl export-reference`."
        )
    frame = read_csv(path)
    missing = set(cols) - set(frame.columns)
    if missing:
        raise ValueError(f"Table '{path}' lacks the columns {sorted(missing)}.")
    return frame


def _rebuild(cfg: dict, src: Path, out: Path) -> list[Path]:
    """Each study's statistics and figures from the tidy tables under `src`, into `out`."""
    from rl.analysis import results

    made = []
    if config_mod.variant_names(cfg, "ppo"):
        tidy = {s: _read_tidy(src, f"aggregate/{s}.csv", c) for s, c in results.PPO_TIDY.items()}
        results.aggregate_ppo(cfg, tidy, out / "aggregate", write_tidy=out != src)
        names = ["ppo.png", "ppo.pdf", "ppo_statistics.png", "ppo_statistics.pdf"]
        made += [out / "figures" / n for n in names]
        results.plot_ppo(cfg, out / "aggregate", *made[-4:])
    if config_mod.variant_names(cfg, "pendulum"):
        tidy = {
            s: _read_tidy(src, f"aggregate/pendulum/{s}.csv", c)
            for s, c in results.PENDULUM_TIDY.items()
        }
        agg_dir, figs = out / "aggregate" / "pendulum", out / "figures" / "pendulum"
        results.aggregate_pendulum(cfg, tidy, agg_dir, write_tidy=out != src)
        made += [figs / "pendulum.png", figs / "pendulum.pdf"]
        results.plot_pendulum(cfg, agg_dir, *made[-2:])
    if "compare" in cfg:
        from rl.compare.results import rebuild

        made += rebuild(cfg, src, out)
    if "tune" in cfg:
        from rl.tune.report import rebuild

        made += rebuild(cfg, src, out)
    return made


# A study's folders of across-seed tables (a reference result's statistics)
TABLE_FOLDERS = ("aggregate", "aggregate/pendulum", "aggregate/compare", "tune")


@stage(
    "figures",
    "rebuild the statistics and figures from tidy per-seed tables (no training)",
    Arg(
        "--from",
        required=True,
        help="folder with config.yaml and aggregate/ tidy tables (e.g. reference/ci-variants)",
    ),
    Arg("--out", help="where to write aggregate/ and figures/ (default: --from)"),
    kind=TOOL,
)
def figures(job: Job) -> None:
    from rl.analysis.results import REFERENCE_FILES

    args = job.args
    src = Path(getattr(args, "from"))
    out = Path(args.out) if args.out else src
    cfg = config_mod.load(src / "config.yaml")
    started = datetime.now(UTC)
    made = _rebuild(cfg, src, out)
    inputs = [src / rel for rel in REFERENCE_FILES if (src / rel).is_file()]
    # the statistics were remade too: their folders' records describe the new bytes
    tables = [out / d for d in TABLE_FOLDERS]
    for folder in sorted({p.parent for p in made} | {d for d in tables if d.is_dir()}):
        record = folder / provenance.RECORD
        old = json.loads(record.read_text()) if record.is_file() else {}
        if old.get("outputs") == provenance.folder_outputs(folder):
            # the same bytes as the record describes: keep it (a clean clone stays clean)
            log.info("%s: figures unchanged, byte for byte; kept %s", folder, record)
            continue
        provenance.write(folder, cfg, stage="figures", started=started, inputs=inputs)
    log.info("rebuilt from %s:\n%s", src, "\n".join(str(p) for p in made))


@stage(
    "export_reference",
    "copy a study's tables, figures and provenance to a folder",
    Arg("--config", required=True, help="the study's config (results/<study>/config.yaml)"),
    Arg("--to", required=True, help="e.g. reference/<study>"),
    kind=TOOL,
)
def export_reference(job: Job) -> None:
    """Copy a finished study's tidy tables, statistics, figures and provenance to a tracked
    folder (the reference result `figures` rebuilds from)."""
    from rl.analysis.results import REFERENCE_FILES

    args = job.args
    study = layout.study_dir(config_mod.load(args.config))
    to = Path(args.to)
    wanted = [*REFERENCE_FILES]
    figures = ("figures", "figures/pendulum", "figures/compare", "figures/tune")
    for folder in (*TABLE_FOLDERS, *figures):
        if (study / folder).is_dir():
            wanted += [
                f"{folder}/{p.name}"
                for p in sorted((study / folder).iterdir())
                if p.is_file() and p.suffix in (".csv", ".json", ".png", ".pdf", ".yaml")
            ]
    copied = 0
    for rel in dict.fromkeys(wanted):
        if (study / rel).is_file():
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(study / rel, to / rel)
            copied += 1
    if not copied:
        raise FileNotFoundError(f"Nothing to export under '{study}': run the study first.")
    log.info("exported %d files of %s to %s", copied, study, to)


@stage(
    "provenance",
    "print what made a result file, figure or folder",
    Arg("path", help="a file or folder under results/ (or a reference result)"),
    Arg("--json", action="store_true", help="the whole record as JSON"),
    kind=TOOL,
)
def show_provenance(job: Job) -> None:
    args = job.args
    if args.json:
        _, rec = provenance.find(args.path)
        print(json.dumps(rec, indent=2, sort_keys=True))
    else:
        print(provenance.describe(args.path))


STAGES = (aggregate, plot, aggregate_pendulum, plot_pendulum, figures, export_reference)
STAGES += (show_provenance,)
