"""MLflow tracking: one experiment per study, a parent run per (variant, seed) and one for
the study's aggregate stages, a child run per stage (docs/tracking.md). The store and its
parents, here; one stage's run in `rl.tracking.run`. Designed for many jobs at once:

- the store, the experiment and the parent runs are created once, by `mlflow-init`, before
  any parallel job (a fresh sqlite store migrated by racing jobs breaks for good; a racing
  experiment creation misfiles runs); stage jobs never create a store, an experiment or a
  parent, they look them up;
- metrics are buffered and flushed with `log_batch` every `mlflow.flush_every` rows or
  `mlflow.flush_seconds` seconds, whichever comes first, so a running job shows progress;
- a job checks the store (with a short timeout) before it starts working; an unusable store
  fails it with one paragraph naming the URI and the fix, or, with
  `mlflow.on_unreachable: continue`, the job runs untracked and says so, and
  `python -m rl mlflow-sync` rebuilds the records from results/ later;
- logging errors propagate (never dropped); URIs are redacted wherever they are written.

The files under results/ are the source of truth: `rl.tracking.sync` turns them back into
the same records (the `mlflow-sync` verb).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rl.core import layout
from rl.core.files import write_json
from rl.core.secrets import redact

log = logging.getLogger("rl")

# MLflow 3 opens an experiment on its training runs with this kind, not on the GenAI
# overview (traces, token usage) it shows an experiment without one.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(cfg: dict) -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or cfg["mlflow"]["tracking_uri"]
        or layout.mlflow_default_uri(cfg)
    )


def experiment_name(cfg: dict) -> str:
    return cfg["mlflow"]["experiment"] or cfg["study"]


class TrackingUnavailable(RuntimeError):
    """The store cannot be used; the message is one paragraph naming the URI and the fix."""


def _unavailable(uri: str, problem: str, fix: str | None = None) -> TrackingUnavailable:
    fix = fix or (
        "Start the server or fix the URI (config key mlflow.tracking_uri or the "
        "MLFLOW_TRACKING_URI variable; credentials go in MLFLOW_TRACKING_USERNAME/"
        "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, never in the URI); unset both to "
        "use the embedded sqlite store under results/<study>/mlflow/. To train now and log "
        "later, set mlflow.on_unreachable: continue and run `python -m rl mlflow-sync "
        "--config <config>` once the store is back."
    )
    return TrackingUnavailable(
        f"MLflow tracking store '{redact(uri)}' cannot be used: {redact(problem)}. {fix}"
    )


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_store(uri: str, timeout_s: float, *, initialised: bool) -> None:
    """Fail fast (within about `timeout_s`) if the store at `uri` cannot be used.

    `initialised=True` (stage jobs): a local sqlite store must already exist: jobs never
    create one, since parallel jobs migrating a fresh database break it for good.
    """
    db = _sqlite_path(uri)
    if db is not None:
        if initialised and not (db.is_file() and db.stat().st_size > 0):
            raise _unavailable(
                uri,
                f"the database {db} does not exist (the store was never initialised, or "
                f"was deleted)",
                "Run the workflow (its mlflow_init rule creates it), or by hand `python -m rl "
                "mlflow-init --config <config> --marker <marker>`; after a deletion, "
                "`python -m rl mlflow-sync --config <config>` rebuilds it from results/.",
            )
        if not initialised:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unavailable(uri, f"cannot create {db.parent}: {exc}") from None
        return
    if uri.startswith(("http://", "https://")):
        _check_http(uri, timeout_s)
        return
    file_store = uri.startswith("file:") or "://" not in uri and not uri.startswith("databricks")
    if file_store and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise _unavailable(
            uri,
            "the plain file store (mlruns folders) is deprecated in MLflow 3 and refused "
            "unless MLFLOW_ALLOW_FILE_STORE=true",
            "Use a sqlite URI (sqlite:////absolute/path/mlflow.db), a tracking server, or "
            "unset mlflow.tracking_uri and MLFLOW_TRACKING_URI for the embedded default.",
        )
    if "://" in uri and not uri.startswith("databricks"):  # a SQL database: reachable?
        _check_database(uri, timeout_s)
    # Then (databricks, SQL databases) one cheap query, without MLflow's retries.
    limits = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout_s))),
    }
    saved = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        _client(uri).search_experiments(max_results=1)
    except Exception as exc:  # any backend (databricks, SQL databases) raises its own types
        raise _unavailable(uri, f"{type(exc).__name__}: {str(exc)[:500]}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_database(uri: str, timeout_s: float) -> None:
    """A SQL database: one connection with a timeout first. MLflow's own store retries a
    refused connection ten times with back-off (about 100 s) before it gives up."""
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(uri)
    except Exception as exc:
        raise _unavailable(uri, f"it is not a database URL ({exc})") from None
    connect_args = {}
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, int(timeout_s))
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # drivers raise their own types; a missing driver is ImportError
        raise _unavailable(uri, f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None


def _check_http(uri: str, timeout_s: float) -> None:
    """A server that does not take the connection within `timeout_s` is unreachable. One
    that took it is alive: it gets MLflow's own request timeout to answer, because a server
    busy with many jobs starting at once (a study fanning out, 32 writers in the load test)
    answers late, and a job must not die of that before it starts."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    read_s = max(timeout_s, MLFLOW_HTTP_REQUEST_TIMEOUT.get())
    try:
        resp = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "POST",
            max_retries=0,
            timeout=(timeout_s, read_s),  # requests: (connect, read)
            raise_on_status=False,
            json={"max_results": 1},
        )
    except Exception as exc:
        raise _unavailable(
            uri,
            f"no connection within {timeout_s:g} s or no answer within {read_s:g} s "
            f"({type(exc).__name__}: {str(exc)[:300]})",
        ) from None
    if resp.status_code in (401, 403):
        raise _unavailable(
            uri,
            f"the server refused the credentials (HTTP {resp.status_code})",
            "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
            "MLFLOW_TRACKING_TOKEN, to credentials that may write to this server.",
        )
    try:
        mlflow_like = resp.status_code == 200 and isinstance(resp.json(), dict)
    except ValueError:
        mlflow_like = False
    if not mlflow_like:
        raise _unavailable(
            uri,
            f"it answered HTTP {resp.status_code} to the MLflow REST API, so it is not an "
            f"MLflow tracking server (or the URI has a wrong path)",
            "Point mlflow.tracking_uri or MLFLOW_TRACKING_URI at the server's root URL, "
            "e.g. http://host:5000.",
        )


def _ensure_experiment(client, cfg: dict, uri: str) -> str:
    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        # A sqlite store keeps its artifacts beside the database (for the embedded default:
        # results/<study>/mlflow/artifacts), not in MLflow's ./mlruns of whatever folder the
        # creating process ran in. A server decides for itself.
        db = _sqlite_path(uri)
        artifacts = (db.parent / "artifacts").resolve().as_uri() if db else None
        return client.create_experiment(name, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
    if exp.lifecycle_stage != "active":
        raise _unavailable(
            uri,
            f"the experiment '{name}' is deleted",
            f"Restore it in the UI (or `mlflow experiments restore --experiment-id "
            f"{exp.experiment_id}`), or set mlflow.experiment to another name.",
        )
    for key, value in EXPERIMENT_TAGS.items():  # an experiment made before the tag existed
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def _parent_filter(variant: str | None, seed: int | None) -> str:
    if seed is None:
        return "tags.`rl.kind` = 'study'"
    return (
        f"tags.`rl.kind` = 'seed' AND tags.`rl.variant` = '{variant}' AND tags.`rl.seed` = '{seed}'"
    )


def _parent_key(variant: str | None, seed: int | None) -> str:
    return "study" if seed is None else f"{variant}/seed{seed}"


def variant_params(cfg: dict, name: str | None = None) -> dict[str, dict[str, str]]:
    """Per variant, what tells its parent runs from the others' in the UI's run table (the
    seed aside): the variant, environment, the variant's config hash and every PPO and
    pendulum setting that differs between the study's variants. `cfg` is the study's
    config, computed once for all its variants; with `name`, `cfg` is that one variant's
    resolved config (a job's) and only its identity is known."""
    from rl.core.config import OVERRIDABLE, config_hash, flatten, variant_config, variant_names

    if name is not None or not cfg.get("variants"):
        configs = {name or layout.DEFAULT_VARIANT: cfg}
    else:
        configs = {v: variant_config(cfg, v) for v in variant_names(cfg)}
    flat = {v: flatten({s: c.get(s) for s in OVERRIDABLE}) for v, c in configs.items()}
    differ = sorted(
        {k for f in flat.values() for k in f if len({str(g.get(k)) for g in flat.values()}) > 1}
    )
    return {
        v: {"variant": v, "env_id": str(c["env"]["id"])}
        | {k: str(flat[v].get(k)) for k in differ}
        | {"config_hash": config_hash(c)}
        for v, c in configs.items()
    }


def parent_params(by_variant: dict, variant: str, seed: int) -> dict[str, str]:
    """One parent run's params from variant_params; a variant the config does not name (the
    default parents mlflow-sync keeps for a study with variants) gets its name and seed."""
    return {"variant": variant} | by_variant.get(variant, {}) | {"seed": str(seed)}


def set_parent_params(client, run, params: dict[str, str]) -> None:
    """Log the params `run` (a parent) lacks; MLflow params never change once set."""
    from mlflow.entities import Param

    missing = [Param(k, v) for k, v in params.items() if k not in run.data.params]
    if missing:
        client.log_batch(run.info.run_id, params=missing)


def _create_parent(
    client, exp_id: str, cfg: dict, variant: str | None, seed: int | None, by_variant: dict
) -> str:
    study = cfg["study"]
    tags = {"rl.kind": "study", "rl.study": study}
    name = f"{study}-all-seeds"
    if seed is not None:
        tags |= {"rl.kind": "seed", "rl.variant": variant, "rl.seed": str(seed)}
        name = f"{variant}-seed{seed}"
    run = client.create_run(exp_id, run_name=name, tags=tags)
    if seed is not None:
        set_parent_params(client, run, parent_params(by_variant, variant, seed))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def open_store(cfg: dict, uri: str, seeds: list[int], variants: list[str]) -> dict:
    """Create (or find) the experiment, one parent run per (variant, seed) and the
    study-level parent of the aggregate stages. Idempotent. Single process only."""
    check_store(uri, cfg["mlflow"]["health_check_seconds"], initialised=False)
    try:
        client = _client(uri)
        exp_id = _ensure_experiment(client, cfg, uri)
        parents: dict[str, str] = {}
        by_variant = variant_params(cfg)
        wanted = [(None, None)] + [(v, s) for v in variants for s in seeds]
        for variant, seed in wanted:
            found = client.search_runs(
                [exp_id], filter_string=_parent_filter(variant, seed), max_results=1
            )
            if found:
                run_id = found[0].info.run_id
                if seed is not None:
                    set_parent_params(client, found[0], parent_params(by_variant, variant, seed))
            else:
                run_id = _create_parent(client, exp_id, cfg, variant, seed, by_variant)
            parents[_parent_key(variant, seed)] = run_id
    except TrackingUnavailable:
        raise
    except Exception as exc:  # mlflow raises many types for a dead or misconfigured store
        raise _unavailable(uri, f"{type(exc).__name__}: {str(exc)[:500]}") from None
    return {
        "tracking_uri": redact(uri),
        "experiment": experiment_name(cfg),
        "experiment_id": exp_id,
        "parents": parents,
        "available": True,
    }


def ui_links(uri: str, experiment: str, base: str) -> dict[str, str]:
    """The UI pages a reviewer opens first, when the store holds the study: its runs table
    (MLflow's model-training view, not the GenAI overview the UI opens on by default) and
    its parent runs side by side (each (variant, seed) parent's params and headline
    metrics, and the study's IQM). Empty when the study is not in the store yet."""
    import json
    from urllib.parse import quote

    try:
        client = _client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        parents = client.search_runs(
            [exp.experiment_id], "tags.`rl.kind` != 'stage'", max_results=1000
        )
    except Exception as exc:  # the UI still starts; it shows the store's own error
        log.warning("cannot read the study's runs from %s: %s", redact(uri), exc)
        return {}
    exp_id = exp.experiment_id
    links = {"runs": f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"}
    if parents:
        ids = sorted((r.info.run_name, r.info.run_id) for r in parents)
        runs = quote(json.dumps([run_id for _, run_id in ids]))
        links["compare"] = (
            f"{base}/#/compare-runs?runs={runs}&experiments={quote(json.dumps([exp_id]))}"
        )
    return links


def init_store(cfg: dict, seeds: list[int], variants: list[str], marker: str | Path) -> dict:
    """`mlflow-init`: open the store once, before parallel jobs, and write `marker`.

    The marker records what was initialised (URI redacted); jobs look the ids up again, so
    a store rebuilt by `mlflow-sync` keeps working without touching the marker.
    """
    uri = tracking_uri(cfg)
    try:
        info = open_store(cfg, uri, seeds, variants)
    except TrackingUnavailable as exc:
        if cfg["mlflow"]["on_unreachable"] != "continue":
            raise
        log.warning("%s Continuing untracked (mlflow.on_unreachable: continue).", exc)
        info = {
            "tracking_uri": redact(uri),
            "experiment": experiment_name(cfg),
            "available": False,
            "reason": str(exc),
        }
    write_json(marker, info)
    return info
