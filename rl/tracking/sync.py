"""The files under results/ as MLflow records, and the way back: `sync_study` rebuilds a
study's runs (params, tags, metrics, artifacts, the policy model) from its output folders,
through the same `StageRun` the jobs use, leaving runs already there alone.

The metric rows of each table are made by one function each, used by the live jobs and by
the sync alike, so both log exactly the same points.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

from rl.core import layout
from rl.core.config import config_hash, variant_config, variant_names
from rl.core.files import read_json
from rl.tracking.run import StageRun, open_store, redact, tracking_uri

log = logging.getLogger("rl")

ID_COLUMNS = ("frames", "batch", "variant", "seed", "episode", "iteration")


def table_rows(frame, step: str) -> list[tuple[int, dict]]:
    """Rows of a per-step table: every numeric column but the identifiers, at `step`."""
    import pandas as pd

    cols = [
        c for c in frame.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])
    ]
    return [(int(r[step]), {c: r[c] for c in cols}) for r in frame.to_dict("records")]


def episode_rows(episodes) -> list[tuple[int, dict]]:
    """Evaluation episodes: step = episode index."""
    return [
        (i, {"eval_return": float(r), "eval_episode_length": float(n)})
        for i, (r, n) in enumerate(zip(episodes["return"], episodes["length"], strict=True))
    ]


def summary_rows(summary) -> list[tuple[int, dict]]:
    """The across-seed summary as step-0 metrics: '<quantity>.<mean|ci_low|ci_high>'
    (prefixed by the variant when it is not the default one)."""
    row: dict[str, float] = {}
    for r in summary.to_dict("records"):
        prefix = "" if r["variant"] == layout.DEFAULT_VARIANT else f"{r['variant']}."
        for stat in ("mean", "ci_low", "ci_high"):
            row[f"{prefix}{r['quantity']}.{stat}"] = float(r[stat])
    return [(0, row)]


# ---------------------------------------------------------------------------- sync


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _train_ppo_rows(folder: Path) -> list[tuple[int, dict]]:
    rows = table_rows(_read_csv(folder / "train_metrics.csv"), "frames")
    evals = _read_csv(folder / "train_eval.csv")[["frames", "eval_return", "eval_episode_length"]]
    return rows + table_rows(evals, "frames")


# For each stage: the artifacts (file-name patterns in its output folder) and the metric
# rows its files hold. A stage missing here is synced with every file of its folder as
# artifacts and no metrics (and a warning): add it when adding a stage.
STAGES: dict[str, dict[str, Any]] = {
    "obs_norm_stats": {"artifacts": ("stats.json", "provenance.json")},
    "train_ppo": {
        "artifacts": ("train_metrics.csv", "train_eval.csv", "provenance.json"),
        "rows": _train_ppo_rows,
    },
    "evaluate_ppo": {
        "artifacts": (
            "episodes.csv",
            "summary.json",
            "provenance.json",
            "videos.json",
            "episode-*.mp4",
            "episode-*.gif",
        ),
        "rows": lambda folder: episode_rows(_read_csv(folder / "episodes.csv")),
    },
    "aggregate": {
        "artifacts": ("ppo_*.csv", "provenance.json"),
        "rows": lambda folder: summary_rows(_read_csv(folder / "ppo_summary.csv")),
    },
    "plot": {"artifacts": ("*.png", "*.pdf", "provenance.json")},
    "train_pendulum": {
        "artifacts": ("train_metrics.csv", "eval_trajectories.csv", "provenance.json"),
        "rows": lambda folder: table_rows(_read_csv(folder / "train_metrics.csv"), "frames"),
    },
    "animate_pendulum": {"artifacts": ("animation.*", "provenance.json")},
    "aggregate_pendulum": {
        "artifacts": ("*.csv", "provenance.json"),
        "rows": lambda folder: summary_rows(_read_csv(folder / "summary.csv")),
    },
    "plot_pendulum": {"artifacts": ("*.png", "*.pdf", "provenance.json")},
}


def stage_artifacts(stage: str, folder: Path) -> list[Path]:
    patterns = STAGES.get(stage, {}).get("artifacts", ("*",))
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if stage not in STAGES:
        files = [p for p in files if p.suffix != ".pt" and not p.name.endswith(".tmp")]
    return [p for p in files if any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]


def _log_synced_policy(run: StageRun, cfg: dict, folder: Path, variant: str, seed: int) -> None:
    from rl.ppo.envs import make_env
    from rl.ppo.evaluate import load_actor

    stats_path = layout.outputs(cfg)["obs_norm"].format(variant=variant, seed=seed)
    stats = read_json(stats_path, "observation statistics")
    env, _ = make_env(cfg["env"], seed, num_envs=1, obs_stats=stats)
    actor, _ = load_actor(cfg, folder / "policy.pt", "cpu", env)
    env.close()
    run.log_policy(actor, stats)


def sync_study(cfg: dict, uri: str | None = None, config_path: str | Path | None = None) -> dict:
    """Rebuild the MLflow records of a study from its files under results/.

    Every output folder with a provenance.json becomes the run its job would have logged
    (params, tags, metrics, artifacts, the policy model), under the same parents. Runs
    already finished in the store are left alone, so syncing twice adds nothing; a run left
    unfinished (a job that lost the store) is completed without duplicating its points.
    """
    cfg = {**cfg, "mlflow": {**cfg["mlflow"], "enabled": True}}
    uri = uri or tracking_uri(cfg)
    study = layout.study_dir(cfg)
    if not study.is_dir():
        raise FileNotFoundError(f"No results for study '{cfg['study']}' under '{study}'.")
    records = []
    for prov_path in sorted(study.rglob("provenance.json")):
        rel = prov_path.relative_to(study).parts
        if rel[0] in ("mlflow", "logs"):
            continue
        records.append((prov_path.parent, read_json(prov_path, "provenance record")))
    keys = {(p["variant"], p["seed"]) for _, p in records if p.get("seed") is not None}
    variants = sorted({v for v, _ in keys} | {layout.DEFAULT_VARIANT})
    seeds = sorted({s for _, s in keys} | set(cfg["seeds"]))
    info = open_store(cfg, uri, seeds, variants)
    counts = {"created": 0, "completed": 0, "already_there": 0, "other_config": 0}
    known = variant_names(cfg)
    for folder, prov in records:
        stage = prov["stage"]
        # a per-seed record was made with its variant's resolved config, the rest with the study's
        per_seed = prov.get("seed") is not None
        name = prov.get("variant") or layout.DEFAULT_VARIANT
        run_cfg = variant_config(cfg, name) if per_seed and name in known else cfg
        want = config_hash(run_cfg)
        if prov.get("config_hash") != want:
            log.warning(
                "sync: skipping %s: made with config hash %s, not %s (the given config). "
                "Sync it with the config it was made with (its study's config.yaml).",
                folder,
                prov.get("config_hash"),
                want,
            )
            counts["other_config"] += 1
            continue
        if stage not in STAGES:
            log.warning("sync: no metric reader for stage '%s' (%s): artifacts only", stage, folder)
        seed, variant = prov.get("seed"), prov.get("variant") or layout.DEFAULT_VARIANT
        run = StageRun(
            run_cfg, info, stage, prov, seed, variant, config_path=config_path, uri=uri, sync=True
        )
        with run:
            if run.existing:
                counts["already_there"] += 1
                continue
            rows = STAGES.get(stage, {}).get("rows")
            for step, row in rows(folder) if rows else []:
                run.log_metrics(row, step)
            run.log_artifacts(stage_artifacts(stage, folder))
            if stage == "train_ppo" and (folder / "policy.pt").is_file():
                _log_synced_policy(run, run_cfg, folder, variant, seed)
            counts["completed" if run.reopened else "created"] += 1
    log.info(
        "sync of study '%s' to %s: %d runs created, %d completed, %d already there, "
        "%d skipped (other config)",
        cfg["study"],
        redact(uri),
        counts["created"],
        counts["completed"],
        counts["already_there"],
        counts["other_config"],
    )
    return counts
