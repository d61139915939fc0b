"""The MLflow verbs: mlflow-init (a rule, before every parallel job), mlflow-sync, ui and
tracking-server (PostgreSQL + mlflow server for a team or a cluster)."""

from __future__ import annotations

import logging
from pathlib import Path

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
    Arg("--start-timeout", type=float, default=180, help="seconds to wait for MLflow's /health"),
    kind=TOOL,
)
def ui(job: Job) -> None:
    from rl.core.secrets import redact
    from rl.tracking.serving import MlflowUi, serve_until_stopped
    from rl.tracking.store import experiment_name, tracking_uri, ui_links

    args = job.args
    cfg = config_mod.load(args.config)
    uri = tracking_uri(cfg)
    server = MlflowUi(uri, args.host, args.port, start_timeout=args.start_timeout)
    links = ui_links(uri, experiment_name(cfg), server.uri)
    pages = "".join(
        f"\n  {what}: {links[key]}"
        for key, what in (
            ("runs", "the study's runs"),
            ("compare", "its seeds and variants side by side (params, headline metrics)"),
        )
        if key in links
    )
    print(f"starting the MLflow UI for {redact(uri)} (it answers in about 30 s)", flush=True)
    serve_until_stopped(
        server,
        ready=f"MLflow UI on {server.uri} for {redact(uri)}; Ctrl-C (or SIGTERM) stops it.{pages}",
        gone="mlflow ui exited unexpectedly; its output above says why.",
    )


@stage(
    "tracking_server",
    "start PostgreSQL and an MLflow tracking server (artifacts served); Ctrl-C stops both",
    Arg(
        "--dir",
        help="folder of its database, artifacts and logs, on a local disk "
        "(default: results/tracking-server, or <study>/tracking-server with --config)",
    ),
    Arg("--config", help="a study's config: the folder goes under its results"),
    Arg("--host", default="127.0.0.1", help="interface MLflow listens on (0.0.0.0: all)"),
    Arg("--port", type=int, default=5000),
    Arg("--workers", type=int, default=4, help="MLflow's server worker processes"),
    Arg(
        "--allowed-hosts",
        help="comma-separated Host headers MLflow accepts "
        "(default: the host and port served, localhost and 127.0.0.1)",
    ),
    Arg("--start-timeout", type=float, default=180, help="seconds to wait for MLflow's /health"),
    Arg(
        "--optuna-port",
        type=int,
        help="also serve tuning studies' trials: PostgreSQL's database 'optuna' on this TCP "
        "port (password in <dir>/optuna-password; docs/tuning.md)",
    ),
    Arg("--optuna-host", help="interface that port listens on (default: --host; 0.0.0.0: all)"),
    kind=TOOL,
)
def tracking_server(job: Job) -> None:
    from rl.core import layout
    from rl.tracking.server import TrackingServer
    from rl.tracking.serving import serve_until_stopped

    args = job.args
    if args.dir:
        folder = Path(args.dir)
    elif args.config:
        folder = layout.study_dir(config_mod.load(args.config)) / "tracking-server"
    else:
        folder = Path("results") / "tracking-server"
    allowed = args.allowed_hosts.split(",") if args.allowed_hosts else None
    server = TrackingServer(
        folder,
        args.host,
        args.port,
        args.workers,
        allowed,
        start_timeout=args.start_timeout,
        optuna_port=args.optuna_port,
        optuna_host=args.optuna_host,
    )
    optuna = (
        f"\nTuning studies: tune.storage: {server.optuna_storage} (set the host nodes reach), "
        f"with PGPASSWORD=$(cat {server.password_file}) in the workers' environment."
        if args.optuna_port
        else ""
    )
    log.info("starting PostgreSQL and mlflow server in %s", folder.resolve())
    serve_until_stopped(
        server,
        ready=(
            f"MLflow tracking server on {server.uri} (store: PostgreSQL in {server.data}, "
            f"artifacts: {server.artifacts}, logs: {server.logs}).\n"
            f"Point a study at it with `mlflow: {{tracking_uri: {server.uri}}}` in its config "
            f"or MLFLOW_TRACKING_URI={server.uri}; push a finished local study with "
            f"`python -m rl mlflow-sync --config <config> --to {server.uri}`. "
            f"Ctrl-C (or SIGTERM) stops it; the data stay in {folder} for the next start."
            f"{optuna}"
        ),
        gone=f"mlflow server exited unexpectedly; see {server.logs / 'mlflow.log'}",
    )
    log.info("tracking server stopped; data kept in %s", folder.resolve())


STAGES = (mlflow_init, mlflow_sync, ui, tracking_server)
