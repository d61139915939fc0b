"""The search's Optuna study: its storage, sampler and pruner, and a worker's loop.

A worker runs trials one after another in one process until the study has its finished
trials. Before each it reseeds the TPE sampler with `tune.sampler_seed` plus the number of
trials so far, so one worker proposes the same trials whether or not it was restarted.
A worker killed in a trial leaves it RUNNING: with a database storage Optuna's heartbeat
finds it and `RetryHeartbeatStaleTrialCallback` queues it again; with the journal file
(no heartbeat there) every worker, before each trial, fails and re-queues the running
trials whose process on this machine is gone. A retried trial keeps its values and seed,
and its folder, so its training resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState

from rl.core import tuning
from rl.core.errors import ConfigError
from rl.core.secrets import redact

log = logging.getLogger("rl")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# a trial still RUNNING without a worker after this long was never started by one
UNCLAIMED = timedelta(minutes=5)
MAX_RETRY = 3
SCHEMA_ATTEMPTS = 5


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (None: no such process);
    with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_identity() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _alive(worker: str) -> bool | None:
    """Whether the worker process named `worker` runs (None: on another machine)."""
    host, pid, ticks = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    return _start_ticks(int(pid)) == ticks


def retry() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's re-queueing of a failed trial (same values, attributes and seed)."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8: what we want
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def storage(cfg: dict):
    """The study's Optuna storage: the journal file, or the configured database."""
    url = tuning.storage_url(cfg)
    if not url:
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = tuning.files(cfg)["journal"]
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return _database(url, cfg["tune"]["heartbeat_seconds"])
        except Exception as exc:
            # workers meeting an empty database create Optuna's tables at once: the one that
            # loses the race finds them made (a duplicate type or table) and tries again
            racing = type(exc).__name__ in ("IntegrityError", "ProgrammingError")
            if racing and attempt + 1 < SCHEMA_ATTEMPTS:
                time.sleep(1.0)
                continue
            raise ConfigError(
                f"Cannot open the search's Optuna storage {redact(url)} (tune.storage or "
                f"{tuning.STORAGE_ENV}): {type(exc).__name__}: {str(exc).strip()[:300]}. "
                f"Start the database (`python -m rl tracking-server --optuna-port 5433` serves "
                f"one), check the host, port and the password in PGPASSWORD or ~/.pgpass, or "
                f"set tune.storage: null for the journal file on this machine."
            ) from None
    raise AssertionError("unreachable")


def _database(url: str, beat: int) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=beat,
            grace_period=4 * beat,
            heartbeat_stale_trial_callback=retry(),
        )


def sampler(cfg: dict, trials_so_far: int) -> optuna.samplers.BaseSampler:
    tune = cfg["tune"]
    return optuna.samplers.TPESampler(
        seed=tune["sampler_seed"] + trials_so_far,
        multivariate=True,
        constant_liar=tune["workers"] > 1,  # parallel workers: running trials count as bad
    )


def pruner(cfg: dict) -> optuna.pruners.BasePruner:
    section = cfg["tune"]["pruner"]
    if section is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=section["startup_trials"], n_warmup_steps=section["warmup_evaluations"]
    )


def open_study(cfg: dict) -> optuna.Study:
    return optuna.create_study(
        study_name=cfg["study"],
        storage=storage(cfg),
        direction="minimize",
        load_if_exists=True,
        sampler=sampler(cfg, 0),
        pruner=pruner(cfg),
    )


def requeue_orphans(study: optuna.Study) -> list[int]:
    """Fail and re-queue the RUNNING trials whose worker process on this machine is gone
    (the journal file has no heartbeat). Returns their numbers."""
    now = datetime.now()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is None:
            alive = trial.datetime_start and now - trial.datetime_start < UNCLAIMED
        else:
            alive = _alive(worker)
        if alive is not False:
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed = study._storage.get_trial(trial._trial_id)
        retry()(study, failed)
        log.warning(
            "trial %d was left running by %s, which is gone: failed and queued again "
            "(same values and seed; its training resumes from its checkpoint)",
            trial.number,
            worker or "a worker that never claimed it",
        )
        orphans.append(trial.number)
    return orphans


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "all": len(trials),
        "finished": sum(t.state in FINISHED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
    }


def work(cfg: dict, objective, journal: bool) -> dict:
    """Run trials until the study has `tune.trials` finished ones (or the others run the
    rest). A trial that raises is failed; three failures in a row stop the worker."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our log names each trial
    study = open_study(cfg)
    wanted, failures, me = cfg["tune"]["trials"], 0, objective.worker
    while True:
        if journal:
            requeue_orphans(study)
        else:  # a running trial whose heartbeat stopped: failed, and queued again
            optuna.storages.fail_stale_trials(study)
        n = counts(study)
        if n["finished"] >= wanted or (n["finished"] + n["running"] >= wanted and not n["waiting"]):
            break
        study.sampler = sampler(cfg, n["all"])
        log.info(
            "search %s: %d of %d trials finished, %d running; starting one",
            cfg["study"], n["finished"], wanted, n["running"],
        )  # fmt: skip
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me]
        failures = failures + 1 if mine and mine[-1].state == TrialState.FAIL else 0
        if failures >= MAX_RETRY:
            raise RuntimeError(
                f"The last {failures} trials of this worker failed (see the log above for "
                f"their errors); stopping rather than failing every trial of the search."
            )
    return counts(study)
