"""The files under results/ as MLflow records, and the way back: `sync_study` rebuilds a
study's runs (params, tags, metrics, artifacts, the policy model) from its output folders,
through the same `StageRun` the jobs use, leaving runs already there alone.

The metric rows of each table are made by one function each, used by the live jobs and by
the sync alike, so both log exactly the same points.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from rl.core import layout
from rl.core.config import config_hash, variant_config, variant_names
from rl.core.files import read_json
from rl.core.secrets import redact
from rl.tracking.run import StageRun
from rl.tracking.store import open_store, tracking_uri

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


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


# ---------------------------------------------------------------------------- sync


def _records(study: Path) -> list[tuple[Path, dict]]:
    """Every output folder of a study with its provenance record."""
    records = []
    for prov_path in sorted(study.rglob("provenance.json")):
        if prov_path.relative_to(study).parts[0] in ("mlflow", "logs"):
            continue
        records.append((prov_path.parent, read_json(prov_path, "provenance record")))
    return records


def _declared(stage) -> bool:
    """A pipeline stage (a rule) declares its folder's artifacts and rows; a tool does not."""
    return stage is not None and stage.kind != "tool"


def _artifacts(stage, folder: Path) -> list[Path]:
    """The files a stage's run keeps; for a folder a tool wrote (`figures`), every result
    file in it."""
    if _declared(stage):
        return stage.artifact_files(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix != ".pt" and not p.name.endswith(".tmp")]


def _sync_one(run: StageRun, stage, cfg: dict, folder: Path, prov: dict) -> None:
    """Log one folder's metric rows, artifacts and extras into its (new or unfinished) run."""
    for step, row in stage.rows(folder) if _declared(stage) and stage.rows else []:
        run.log_metrics(row, step)
    run.log_artifacts(_artifacts(stage, folder))
    if _declared(stage) and stage.on_sync is not None:
        stage.on_sync(run, cfg, folder, run.variant, run.seed)
    if _declared(stage) and stage.parents is not None:
        run.log_parents(*stage.parents(folder))


def _run_config(cfg: dict, prov: dict) -> dict:
    """The config a record was made with: its variant's for a per-seed record, else the study's."""
    name = prov.get("variant") or layout.DEFAULT_VARIANT
    per_seed = prov.get("seed") is not None
    return variant_config(cfg, name) if per_seed and name in variant_names(cfg) else cfg


def sync_study(
    cfg: dict,
    stages: Mapping,
    uri: str | None = None,
    config_path: str | Path | None = None,
) -> dict:
    """Rebuild the MLflow records of a study from its files under results/.

    Every output folder with a provenance.json becomes the run its job would have logged
    (params, tags, metrics, artifacts, the policy model), under the same parents; `stages`
    (name -> rl.runner.Stage) says what each stage's folder holds. Runs already finished in
    the store are left alone, so syncing twice adds nothing; a run left unfinished (a job
    that lost the store) is completed without duplicating its points.
    """
    cfg = {**cfg, "mlflow": {**cfg["mlflow"], "enabled": True}}
    uri = uri or tracking_uri(cfg)
    study = layout.study_dir(cfg)
    if not study.is_dir():
        raise FileNotFoundError(f"No results for study '{cfg['study']}' under '{study}'.")
    records = _records(study)
    keys = {(p["variant"], p["seed"]) for _, p in records if p.get("seed") is not None}
    variants = sorted({v for v, _ in keys} | {layout.DEFAULT_VARIANT})
    info = open_store(cfg, uri, sorted({s for _, s in keys} | set(cfg["seeds"])), variants)
    counts = {"created": 0, "completed": 0, "already_there": 0, "other_config": 0}
    for folder, prov in records:
        run_cfg = _run_config(cfg, prov)
        if prov.get("config_hash") != config_hash(run_cfg):
            log.warning(
                "sync: skipping %s: made with config hash %s, not %s (the given config). "
                "Sync it with the config it was made with (its study's config.yaml).",
                *(folder, prov.get("config_hash"), config_hash(run_cfg)),
            )
            counts["other_config"] += 1
            continue
        stage = stages.get(prov["stage"])
        if not _declared(stage):
            log.warning(
                "sync: no metric reader for stage '%s' (%s): artifacts only", prov["stage"], folder
            )
        seed, variant = prov.get("seed"), prov.get("variant") or layout.DEFAULT_VARIANT
        run = StageRun(
            run_cfg,
            info,
            prov["stage"],
            prov,
            seed,
            variant,
            config_path=config_path,
            uri=uri,
            sync=True,
        )
        with run:
            if run.existing:
                counts["already_there"] += 1
                continue
            _sync_one(run, stage, run_cfg, folder, prov)
            counts["completed" if run.reopened else "created"] += 1
    log.info(
        "sync of study '%s' to %s: %d runs created, %d completed, %d already there, "
        "%d skipped (other config)",
        *(cfg["study"], redact(uri), counts["created"], counts["completed"]),
        *(counts["already_there"], counts["other_config"]),
    )
    return counts
