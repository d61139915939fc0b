"""The comparison's verbs: evaluate-snapshots and probe-gradients (per seed), and
aggregate-compare and plot-compare (the whole study), one rule each."""

from __future__ import annotations

import logging
from pathlib import Path

from rl.core.files import write_csv
from rl.runner import STUDY, Arg, Job, stage
from rl.tracking.sync import read_csv, summary_rows

log = logging.getLogger("rl")


def snapshot_rows(episodes) -> list[tuple[int, dict]]:
    """One metric row per snapshot (step: simulator steps): its mean evaluation return
    and clamped share, and its other axes."""
    by = episodes.groupby("sim_steps", sort=True)
    table = by.agg(
        eval_return=("return", "mean"),
        clamped_fraction=("clamped_fraction", "mean"),
        grad_steps=("grad_steps", "first"),
        wall_s=("wall_s", "first"),
    )
    return [(int(step), {k: float(v) for k, v in row.items()}) for step, row in table.iterrows()]


@stage(
    "evaluate_snapshots",
    "score one seed's policy snapshots on gymnasium Pendulum-v1 (the comparison's evaluator)",
    Arg("--snapshots", required=True, help="snapshots.pt from train-ppo or train-pendulum"),
    Arg("--out", required=True, help="CSV, one row per snapshot and episode"),
    artifacts=("episodes.csv", "provenance.json"),
    rows=lambda folder: snapshot_rows(read_csv(folder / "episodes.csv")),
)
def evaluate_snapshots(job: Job) -> None:
    from rl.compare.evaluate import evaluate_snapshots as evaluate
    from rl.core import snapshots

    cfg, args = job.cfg, job.args
    found = snapshots.read(args.snapshots)
    table = evaluate(cfg, found, args.seed).assign(variant=args.variant, seed=args.seed)
    write_csv(args.out, table)
    job.finish(Path(args.out).parent, rows=snapshot_rows(table), inputs=[args.snapshots])
    last = table[table["sim_steps"] == table["sim_steps"].max()]
    log.info(
        "%s: %d snapshots x %d episodes; at %d simulator steps the return is %.1f",
        found["method"],
        table["sim_steps"].nunique(),
        cfg["compare"]["episodes"],
        int(last["sim_steps"].iloc[0]),
        float(last["return"].mean()),
    )


def gradient_rows(gradients) -> list[tuple[int, dict]]:
    """One metric row per probed snapshot: each metric per horizon ('grad_norm.h50')."""
    rows = []
    for step, group in gradients.groupby("sim_steps", sort=True):
        metrics = {}
        for r in group.to_dict("records"):
            for k in ("grad_norm", "grad_cosine", "clamped_fraction", "loss"):
                metrics[f"{k}.h{int(r['horizon'])}"] = float(r[k])
        rows.append((int(step), metrics))
    return rows


@stage(
    "probe_gradients",
    "measure the BPTT gradient of one seed's snapshots at several rollout horizons",
    Arg("--snapshots", required=True, help="snapshots.pt from train-pendulum"),
    Arg("--out", required=True, help="CSV, one row per probed snapshot and horizon"),
    artifacts=("gradients.csv", "provenance.json"),
    rows=lambda folder: gradient_rows(read_csv(folder / "gradients.csv")),
)
def probe_gradients(job: Job) -> None:
    from rl.compare.gradients import probe
    from rl.core import snapshots

    cfg, args = job.cfg, job.args
    found = snapshots.read(args.snapshots)
    if found["method"] != snapshots.BPTT:
        raise ValueError(
            f"'{args.snapshots}' holds {found['method']} snapshots; the gradient probe "
            f"measures the BPTT gradient. Pass a train-pendulum snapshots.pt."
        )
    table = probe(cfg, found, args.seed).assign(variant=args.variant, seed=args.seed)
    write_csv(args.out, table)
    job.finish(Path(args.out).parent, rows=gradient_rows(table), inputs=[args.snapshots])
    log.info("gradient probe:\n%s", table.drop(columns=["variant", "seed"]).to_string(index=False))


def aggregate_compare_rows(folder: Path) -> list[tuple[int, dict]]:
    """The comparison's summary and probabilities of improvement as step-0 metrics."""
    rows = summary_rows(read_csv(folder / "summary.csv"))
    for r in read_csv(folder / "improvement.csv").to_dict("records"):
        key = f"poi.{r['x']}_vs_{r['y']}.{r['quantity']}"
        rows[0][1].update(
            {key: r["probability_of_improvement"], f"{key}.ci_low": r["ci_low"]}
            | {f"{key}.ci_high": r["ci_high"]}
        )
    return rows


@stage(
    "aggregate_compare",
    "the comparison's curves, summaries and probabilities of improvement across seeds",
    Arg("--episodes", nargs="+", required=True, help="per-seed episodes.csv of every variant"),
    Arg("--gradients", nargs="*", default=[], help="per-seed gradients.csv (BPTT variants)"),
    Arg("--out-dir", required=True),
    kind=STUDY,
    artifacts=("*.csv", "provenance.json"),
    rows=aggregate_compare_rows,
)
def aggregate_compare(job: Job) -> None:
    from rl.compare.results import aggregate_compare, read_tidy

    args, out = job.args, Path(job.args.out_dir)
    tidy = read_tidy({"episodes": args.episodes, "gradients": args.gradients})
    made = aggregate_compare(job.cfg, tidy, out)
    inputs = [*args.episodes, *args.gradients]
    job.finish(out, rows=aggregate_compare_rows(out), inputs=inputs)
    columns = ["variant", "quantity", "iqm", "iqm_ci_low", "iqm_ci_high", "n_seeds"]
    shown = ["x", "y", "quantity", "probability_of_improvement", "ci_low", "ci_high"]
    log.info(
        "comparison:\n%s\n%s",
        made["summary"][columns].to_string(index=False),
        made["improvement"][shown].to_string(index=False),
    )


@stage(
    "plot_compare",
    "the four-panel comparison figure and the gradient-probe figure (PNG and PDF)",
    Arg("--agg-dir", required=True),
    Arg("--png", required=True),
    Arg("--pdf", required=True),
    Arg("--gradients-png", required=True),
    Arg("--gradients-pdf", required=True),
    kind=STUDY,
    artifacts=("*.png", "*.pdf", "provenance.json"),
)
def plot_compare(job: Job) -> None:
    from rl.compare.results import plot_compare

    args, agg_dir = job.args, Path(job.args.agg_dir)
    paths = (args.png, args.pdf, args.gradients_png, args.gradients_pdf)
    plot_compare(job.cfg, agg_dir, *paths)
    job.finish(Path(args.png).parent, inputs=sorted(agg_dir.glob("*.csv")))
    log.info("figures -> %s", ", ".join(paths))


STAGES = (evaluate_snapshots, probe_gradients, aggregate_compare, plot_compare)
