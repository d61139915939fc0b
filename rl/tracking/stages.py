"""The MLflow verbs: mlflow-init (a rule, before every parallel job), mlflow-sync and ui."""

from __future__ import annotations

import logging
import subprocess
import sys

from rl.core import config as config_mod
from rl.runner import STUDY, TOOL, Arg, Job, stage

log = logging.getLogger("rl")


@stage(
    "mlflow_init",
    "create the MLflow store, experiment and parent runs (once, before parallel jobs)",
    Arg("--marker", required=True, help="marker JSON written when done"),
    kind=STUDY,
)
def mlflow_init(job: Job) -> None:
    from rl.tracking.store import init_store

    cfg = job.cfg
    info = init_store(cfg, cfg["seeds"], config_mod.variant_names(cfg), job.args.marker)
    log.info(
        "MLflow store %s, experiment '%s' (%s)",
        info["tracking_uri"],
        info["experiment"],
        info.get("experiment_id"),
    )


@stage(
    "mlflow_sync",
    "rebuild a study's MLflow records from results/ (idempotent), or push them (--to)",
    Arg("--config", required=True, help="the study's config (results/<study>/config.yaml)"),
    Arg("--to", help="tracking URI to write to (default: the study's own store)"),
    kind=TOOL,
)
def mlflow_sync(job: Job) -> None:
    from rl.tracking.sync import sync_study

    args = job.args
    counts = sync_study(config_mod.load(args.config), job.stages, args.to, args.config)
    if counts["other_config"]:
        log.warning(
            "%d output folders were made with another config and were not synced",
            counts["other_config"],
        )


@stage(
    "ui",
    "open the MLflow UI on the study's store",
    Arg("--config", required=True),
    Arg("--host", default="127.0.0.1", help="interface to listen on (local only)"),
    Arg("--port", type=int, default=5000),
    kind=TOOL,
)
def ui(job: Job) -> None:
    from rl.core.secrets import redact
    from rl.tracking.store import tracking_uri

    args = job.args
    uri = tracking_uri(config_mod.load(args.config))
    print(f"MLflow UI on http://{args.host}:{args.port} for {redact(uri)}", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    subprocess.run([*command, "--host", args.host, "--port", str(args.port)], check=False)


STAGES = (mlflow_init, mlflow_sync, ui)
