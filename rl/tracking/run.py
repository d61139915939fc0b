"""One stage's MLflow run (`StageRun`): found or created under its parent, params and
provenance tags once, metrics buffered and flushed in batches, artifacts, and the trained
PPO policy as an MLflow model. A failing MLflow call is loud (see `rl.tracking.store`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rl.core import layout
from rl.core.config import config_hash, flatten
from rl.core.files import read_json
from rl.core.secrets import redact
from rl.tracking.store import (
    TrackingUnavailable,
    _client,
    _create_parent,
    _parent_filter,
    _parent_key,
    _unavailable,
    check_store,
    parent_params,
    set_parent_params,
    tracking_uri,
    variant_params,
)

log = logging.getLogger("rl")

CONFIG_ARTIFACT_DIR = "config"


def _ms(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


class StageRun:
    """An MLflow run for one stage of one seed (or a study-level stage when seed is None).

    Use as a context manager. The run is a child of its seed's (or the study's) parent run,
    with the flattened resolved config as params, provenance as tags and the config file as
    an artifact. A rerun of the same stage, variant, seed and config (e.g. resumed after a
    kill) reopens the unfinished run and skips metric points it already holds.

    `marker`: the path written by `mlflow-init`, or (for `mlflow-sync`) the dict that
    `open_store` returned; None: untracked. `sync=True` leaves a finished run as it is.
    """

    def __init__(
        self,
        cfg: dict,
        marker: str | Path | dict | None,
        stage: str,
        provenance: dict,
        seed: int | None = None,
        variant: str = layout.DEFAULT_VARIANT,
        *,
        config_path: str | Path | None = None,
        uri: str | None = None,
        sync: bool = False,
    ):
        self.enabled = bool(cfg["mlflow"]["enabled"] and marker is not None)
        self.cfg, self.stage, self.seed, self.variant = cfg, stage, seed, variant
        self.provenance, self.config_path, self.sync = provenance, config_path, sync
        self.mcfg = cfg["mlflow"]
        self.uri = uri or tracking_uri(cfg)
        self.buffer: list = []
        self.buffered_rows = 0
        self.last_flush = time.monotonic()
        self.logged: set[tuple[str, int]] = set()
        self.run_id: str | None = None
        self.parent_id: str | None = None
        self.existing = False  # sync: a finished run of this stage is already there
        self.reopened = False  # an unfinished run of this stage was continued
        self.seconds = 0.0  # time spent in MLflow calls: the logging overhead
        self.info: dict = {}
        if self.enabled:
            self.info = marker if isinstance(marker, dict) else read_json(marker, "MLflow marker")

    # -- identity

    @property
    def identity(self) -> dict[str, str]:
        return {
            "rl.kind": "stage",
            "rl.stage": self.stage,
            "rl.variant": self.variant,
            "rl.seed": "" if self.seed is None else str(self.seed),
            "rl.config_hash": self.provenance.get("config_hash") or config_hash(self.cfg),
        }

    @property
    def run_name(self) -> str:
        if self.seed is None:
            return self.stage
        variant = "" if self.variant == layout.DEFAULT_VARIANT else f"-{self.variant}"
        return f"{self.stage}{variant}-seed{self.seed}"

    # -- guarded calls

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        """Run one MLflow call, timed; a failure is loud: it fails the job, or with
        `on_unreachable: continue` it stops tracking for this job with a warning."""
        if not self.enabled:
            return None
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = _unavailable(self.uri, f"{what} failed: {type(exc).__name__}: {exc}")
            if self.mcfg["on_unreachable"] != "continue":
                raise err from None
            self._go_untracked(err, partial=True)
            return None
        finally:
            self.seconds += time.perf_counter() - t0

    def _go_untracked(self, err: Exception, partial: bool = False) -> None:
        self.enabled = False
        self.buffer = []
        where = f"run {self.run_id} is incomplete" if partial and self.run_id else "no run"
        log.warning(
            "%s Continuing UNTRACKED (mlflow.on_unreachable: continue): %s for stage %s. "
            "Once the store is back: python -m rl mlflow-sync --config %s",
            err,
            where,
            self.run_name,
            self.config_path or "<config>",
        )

    # -- open / close

    def _add_parent(self, exp_id: str) -> str:
        """The parent run of a seed added after mlflow-init (which does not rerun for new
        seeds, so finished seeds stay finished). A lock file beside the study's results
        serialises the jobs of one new seed that start together: one parent, not two."""
        import fcntl

        lock = layout.study_dir(self.cfg) / "mlflow" / "parents.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            found = self.client.search_runs(
                [exp_id], filter_string=_parent_filter(self.variant, self.seed), max_results=1
            )
            if found:
                return found[0].info.run_id
            log.info("MLflow: adding the parent run of %s", _parent_key(self.variant, self.seed))
            by_variant = variant_params(self.cfg, self.variant)
            return _create_parent(
                self.client, exp_id, self.cfg, self.variant, self.seed, by_variant
            )

    def __enter__(self) -> StageRun:
        if not self.enabled:
            return self
        t0 = time.perf_counter()
        try:
            self._open()
        except TrackingUnavailable as exc:
            if self.mcfg["on_unreachable"] != "continue":
                raise
            self._go_untracked(exc)
        finally:
            self.seconds += time.perf_counter() - t0
        self.last_flush = time.monotonic()
        return self

    def _open(self) -> None:
        from mlflow.entities import Param, RunTag

        tags, previous = self._lookup()
        if previous and previous.info.status == "FINISHED" and self.sync:
            self.existing, self.enabled = True, False
            self.run_id = previous.info.run_id
            return
        if previous and previous.info.status != "FINISHED":
            self._reopen(previous)
        else:
            start = _ms(self.provenance.get("started_utc")) if self.sync else None
            run = self._call(
                "creating the run",
                self.client.create_run,
                self.experiment_id,
                start_time=start,
                tags=tags,
                run_name=self.run_name,
            )
            if run is None:
                return
            self.run_id = run.info.run_id
            params = [Param(k, redact(str(v))[:6000]) for k, v in flatten(self.cfg).items()]
            for i in range(0, len(params), 100):
                self._call(
                    "logging params", self.client.log_batch, self.run_id, params=params[i : i + 100]
                )
        self._call(
            "logging tags",
            self.client.log_batch,
            self.run_id,
            tags=[RunTag(k, v) for k, v in self._provenance_tags().items()],
        )
        if self.config_path is not None:
            self.log_artifacts([self.config_path], CONFIG_ARTIFACT_DIR)

    def _check_marker(self) -> None:
        """The store mlflow-init prepared, and the one this job was given, must be one."""
        uri = self.uri
        if not self.info.get("available", True):
            raise _unavailable(uri, f"mlflow-init could not use it: {self.info.get('reason')}")
        if self.info.get("tracking_uri") != redact(uri):
            raise _unavailable(
                uri,
                f"mlflow-init initialised '{self.info.get('tracking_uri')}', another store",
                "Give every job the same MLFLOW_TRACKING_URI / mlflow.tracking_uri as "
                "mlflow-init, or rerun mlflow-init (delete its marker) for the new store.",
            )

    def _lookup(self) -> tuple[dict, Any]:
        """The run's tags (identity and parent) and its latest earlier run, if any."""
        self._check_marker()
        uri = self.uri
        check_store(uri, self.mcfg["health_check_seconds"], initialised=True)
        try:
            self.client = _client(uri)
            exp = self.client.get_experiment_by_name(self.info["experiment"])
            if exp is None or exp.lifecycle_stage != "active":
                raise _unavailable(
                    uri,
                    f"it has no active experiment '{self.info['experiment']}'",
                    "Rerun mlflow-init (delete its marker), or rebuild the store from "
                    "results/ with `python -m rl mlflow-sync --config <config>`.",
                )
            self.experiment_id = exp.experiment_id
            parent = self.client.search_runs(
                [exp.experiment_id],
                filter_string=_parent_filter(self.variant, self.seed),
                max_results=1,
            )
            parent_id = parent[0].info.run_id if parent else self._add_parent(exp.experiment_id)
            self.parent_id = parent_id
            tags = self.identity | {"mlflow.parentRunId": parent_id}
            previous = self.client.search_runs(
                [exp.experiment_id],
                filter_string=" AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
        except TrackingUnavailable:
            raise
        except Exception as exc:
            raise _unavailable(uri, f"{type(exc).__name__}: {str(exc)[:500]}") from None
        return tags, previous[0] if previous else None

    def _reopen(self, previous) -> None:
        """Continue an unfinished run (a resumed job): the points it holds are skipped."""
        self.run_id, self.reopened = previous.info.run_id, True
        self._call("reopening the run", self.client.update_run, self.run_id, "RUNNING")
        for key in previous.data.metrics:
            history = self._call(
                "reading metrics", self.client.get_metric_history, self.run_id, key
            )
            self.logged |= {(m.key, m.step) for m in history or []}
        log.info(
            "MLflow: continuing run %s (%d points already there)", self.run_id, len(self.logged)
        )

    def _provenance_tags(self) -> dict[str, str]:
        p = self.provenance
        tags = {
            "rl.study": self.cfg["study"],
            "rl.git_commit": p.get("git_commit"),
            "rl.git_dirty": p.get("git_dirty"),
            "rl.device": p.get("device"),
            "rl.gpu_name": p.get("gpu_name"),
            "rl.host": p.get("host"),
            "rl.container_image": p.get("container_image"),
            "rl.configured_image": p.get("configured_image"),
            "rl.snakemake_rule": p.get("rule"),
            "mlflow.source.git.commit": p.get("git_commit"),
            "mlflow.source.name": f"rule {p['rule']}" if p.get("rule") else None,
            **{f"rl.version.{k}": v for k, v in p.get("versions", {}).items()},
        }
        if self.sync:
            tags["rl.synced_from"] = "results"
        return {k: redact(str(v)) for k, v in tags.items() if v is not None}

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        if exc_type is None:
            self.flush()
            end = _ms(self.provenance.get("finished_utc")) if self.sync else None
            self._set_tag("rl.tracking_seconds", f"{self.seconds:.2f}")
            self._call(
                "finishing the run", self.client.set_terminated, self.run_id, "FINISHED", end
            )
            log.info("MLflow run %s: %.1f s spent logging", self.run_id, self.seconds)
            return
        try:
            self.flush()
        finally:
            status = "KILLED" if exc_type is KeyboardInterrupt else "FAILED"
            self._call("marking the run " + status, self.client.set_terminated, self.run_id, status)

    # -- logging

    def _set_tag(self, key: str, value: str) -> None:
        if self.enabled:
            self._call("setting a tag", self.client.set_tag, self.run_id, key, value)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Tags of this run (e.g. a search trial's number and outcome)."""
        for key, value in tags.items():
            self._set_tag(key, redact(str(value)))

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        """Buffer one row of metrics at `step` (the `frames` key, if any, is the step)."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for key, value in row.items():
            if value is None or key == "frames" or (key, int(step)) in self.logged:
                continue
            self.buffer.append(Metric(key, float(value), ts, int(step)))
            self.logged.add((key, int(step)))
        self.buffered_rows += 1
        due = time.monotonic() - self.last_flush >= self.mcfg["flush_seconds"]
        if self.buffered_rows >= self.mcfg["flush_every"] or due:
            self.flush()

    def flush(self) -> None:
        if self.enabled and self.buffer:
            self._call("logging metrics", self.client.log_batch, self.run_id, metrics=self.buffer)
        self.buffer, self.buffered_rows = [], 0
        self.last_flush = time.monotonic()

    def log_parents(self, per_seed: dict, study: dict) -> None:
        """Headline numbers on the parent runs, the rows the UI's run table shows first:
        `per_seed` {(variant, seed): metrics} on each (variant, seed) parent, with the
        params that tell them apart (from this run's config: the study's, for a study
        stage), and `study` on this run's parent. Logged at step 0; NaN is left out."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)

        def metrics(values: dict) -> list:
            return [
                Metric(k, float(v), ts, 0)
                for k, v in values.items()
                if v is not None and not math.isnan(float(v))
            ]

        parents = self._call(
            "finding the parent runs",
            self.client.search_runs,
            [self.experiment_id],
            filter_string="tags.`rl.kind` = 'seed'",
            max_results=50000,
        )
        by_key = {
            (r.data.tags["rl.variant"], int(r.data.tags["rl.seed"])): r for r in parents or []
        }
        by_variant = variant_params(self.cfg)
        for (variant, seed), values in sorted(per_seed.items()):
            parent = by_key.get((variant, int(seed)))
            if parent is None:
                continue
            params = parent_params(by_variant, variant, int(seed))
            self._call("logging a parent's params", set_parent_params, self.client, parent, params)
            found = metrics(values)
            if found:
                self._call(
                    "logging a parent's metrics",
                    self.client.log_batch,
                    parent.info.run_id,
                    metrics=found,
                )
        if study and self.parent_id:
            self._call(
                "logging the study's metrics",
                self.client.log_batch,
                self.parent_id,
                metrics=metrics(study),
            )

    def log_artifacts(self, paths: list[str | Path], folder: str | None = None) -> None:
        if not self.enabled:
            return
        for path in paths:
            self._call(
                f"logging artifact {path}",
                self.client.log_artifact,
                self.run_id,
                str(path),
                artifact_path=folder,
            )

    def log_model(self, module, example) -> str | None:
        """Log a torch module as the run's MLflow pytorch model (once; see
        rl.tracking.model); returns its models:/ URI."""
        if not self.enabled:
            return None
        from rl.tracking.model import log_model

        return self._call("logging the policy model", log_model, self, module, example)
