"""MLflow tracking: one experiment per study, a parent run per (variant, seed), a child
run per stage. Designed by ../shared/mlflow-facts.md: the store, the experiment and the
parent runs are created once, by `mlflow-init`, before any parallel job; stage jobs
buffer metrics and flush them with `log_batch`; logging errors propagate (never dropped).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from rl import layout
from rl.config import config_hash, flatten
from rl.files import read_json, write_json

log = logging.getLogger("rl")


def tracking_uri(cfg: dict) -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or cfg["mlflow"]["tracking_uri"]
        or layout.mlflow_default_uri(cfg)
    )


def experiment_name(cfg: dict) -> str:
    return cfg["mlflow"]["experiment"] or cfg["study"]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _unreachable(uri: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Cannot reach the MLflow tracking store '{uri}': {type(exc).__name__}: {exc}. "
        f"Start the server or fix the URI (config key mlflow.tracking_uri or the "
        f"MLFLOW_TRACKING_URI variable); unset both to use the embedded sqlite store "
        f"under results/<study>/mlflow/, or set mlflow.enabled: false to run untracked."
    )


def init_store(cfg: dict, seeds: list[int], variants: list[str], marker: str | Path) -> dict:
    """Create the store, the experiment and one parent run per (variant, seed), once.

    Idempotent: existing experiment and parent runs are reused. Writes `marker` with
    the ids every stage job needs.
    """
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = _client(uri)
    name = experiment_name(cfg)
    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            artifacts = None if cfg["mlflow"]["tracking_uri"] else layout.mlflow_artifact_root(cfg)
            exp_id = client.create_experiment(name, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
    except Exception as exc:  # mlflow raises many types for a dead server
        raise _unreachable(uri, exc) from exc
    parents: dict[str, str] = {}
    for variant in variants:
        for seed in seeds:
            key = f"{variant}/seed{seed}"
            found = client.search_runs(
                [exp_id],
                filter_string=(
                    f"tags.`rl.kind` = 'seed' AND tags.`rl.variant` = '{variant}' "
                    f"AND tags.`rl.seed` = '{seed}'"
                ),
                max_results=1,
            )
            if found:
                parents[key] = found[0].info.run_id
            else:
                run = client.create_run(
                    exp_id,
                    run_name=f"{variant}-seed{seed}",
                    tags={"rl.kind": "seed", "rl.variant": variant, "rl.seed": str(seed)},
                )
                client.set_terminated(run.info.run_id)
                parents[key] = run.info.run_id
    info = {"tracking_uri": uri, "experiment": name, "experiment_id": exp_id, "parents": parents}
    write_json(marker, info)
    return info


class StageRun:
    """An MLflow run for one stage of one seed (or the study-level aggregate).

    Use as a context manager. Metrics are buffered and flushed with `log_batch`.
    A stage rerun (e.g. resumed after a kill) reopens the unfinished run of the same
    stage, variant and seed instead of starting a second one.
    """

    def __init__(
        self,
        cfg: dict,
        marker: str | Path | None,
        stage: str,
        provenance: dict,
        seed: int | None = None,
        variant: str = layout.DEFAULT_VARIANT,
    ):
        self.enabled = cfg["mlflow"]["enabled"] and marker is not None
        self.cfg, self.stage, self.seed, self.variant = cfg, stage, seed, variant
        self.provenance = provenance
        self.flush_every = cfg["mlflow"]["flush_every"]
        self.buffer: list = []
        self.run_id: str | None = None
        if self.enabled:
            self.info = read_json(marker, "MLflow initialisation marker")

    def __enter__(self) -> StageRun:
        if not self.enabled:
            return self
        from mlflow.entities import Param, RunTag

        self.client = _client(self.info["tracking_uri"])
        exp_id = self.info["experiment_id"]
        tags = {
            "rl.kind": "stage",
            "rl.stage": self.stage,
            "rl.variant": self.variant,
            "rl.seed": "" if self.seed is None else str(self.seed),
            "rl.config_hash": config_hash(self.cfg),
        }
        parent = self.info["parents"].get(f"{self.variant}/seed{self.seed}")
        if parent:
            tags["mlflow.parentRunId"] = parent
        try:
            previous = self.client.search_runs(
                [exp_id],
                filter_string=" AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if previous and previous[0].info.status != "FINISHED":
                self.run_id = previous[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
                log.info("MLflow: continuing run %s", self.run_id)
            else:
                name = f"{self.stage}" + ("" if self.seed is None else f"-seed{self.seed}")
                run = self.client.create_run(exp_id, run_name=name, tags=tags)
                self.run_id = run.info.run_id
                params = [Param(k, str(v)[:6000]) for k, v in flatten(self.cfg).items()]
                for i in range(0, len(params), 100):
                    self.client.log_batch(self.run_id, params=params[i : i + 100])
        except Exception as exc:
            raise _unreachable(self.info["tracking_uri"], exc) from exc
        prov_tags = {
            "git_commit": self.provenance.get("git_commit"),
            "git_dirty": self.provenance.get("git_dirty"),
            "device": self.provenance.get("device"),
            "gpu_name": self.provenance.get("gpu_name"),
            "container_image": self.provenance.get("container_image"),
            "snakemake_rule": self.provenance.get("rule"),
            **{f"version.{k}": v for k, v in self.provenance.get("versions", {}).items()},
        }
        self.client.log_batch(
            self.run_id,
            tags=[RunTag(f"rl.{k}", str(v)) for k, v in prov_tags.items() if v is not None],
        )
        return self

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for key, value in row.items():
            if value is None or key == "frames":
                continue
            self.buffer.append(Metric(key, float(value), ts, int(step)))
        if len(self.buffer) >= self.flush_every * max(len(row), 1):
            self.flush()

    def flush(self) -> None:
        if self.enabled and self.buffer:
            self.client.log_batch(self.run_id, metrics=self.buffer)
            self.buffer = []

    def log_artifacts(self, paths: list[str | Path], folder: str | None = None) -> None:
        if not self.enabled:
            return
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        if exc_type is None:
            self.flush()
            self.client.set_terminated(self.run_id, status="FINISHED")
        else:
            try:
                self.flush()
            finally:
                status = "KILLED" if exc_type is KeyboardInterrupt else "FAILED"
                self.client.set_terminated(self.run_id, status=status)
