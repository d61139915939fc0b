"""The tuning study's verbs: tune-worker (runs trials until the search has its trials) and
tune-report (the winner, the trials table, the importances and the search figure)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rl.core import tuning
from rl.core.errors import ConfigError
from rl.core.files import write_csv, write_json
from rl.runner import STUDY, Arg, Job, stage

log = logging.getLogger("rl")


def _need_tune(job: Job) -> dict:
    if "tune" not in job.cfg:
        raise ConfigError(
            f"{job.args.config} has no `tune:` section, so there is no search to run. Use a "
            f"tuning study's config (e.g. configs/tune.yaml; docs/tuning.md)."
        )
    return job.cfg


@stage(
    "tune_worker",
    "run trials of the study's hyperparameter search until it has tune.trials",
    Arg("--worker", type=int, required=True, help="this worker's index (its record's name)"),
    Arg("--out", required=True, help="the worker's record (JSON), written when it is done"),
    kind=STUDY,
)
def tune_worker(job: Job) -> None:
    import psutil

    from rl.tune.search import work, worker_identity
    from rl.tune.trial import Objective

    cfg = _need_tune(job)
    started = time.monotonic()
    journal = tuning.storage_url(cfg) is None
    objective = Objective(job, worker_identity())
    # the process's start-up cost: interpreter, imports, config, until the first trial
    ready_s = time.time() - psutil.Process().create_time()
    total = work(cfg, objective, journal)
    ran = objective.results
    record = {
        "worker": job.args.worker,
        "process": objective.worker,
        "trials": ran,
        "study": total,
        "startup_s": ready_s,
        "seconds": time.monotonic() - started,
    }
    write_json(job.args.out, record)
    job.write_provenance(Path(job.args.out).parent, extra={"worker": job.args.worker})
    log.info(
        "worker %d: ran %d trial(s); the search has %d of %d finished",
        job.args.worker, len(ran), total["finished"], cfg["tune"]["trials"],
    )  # fmt: skip


@stage(
    "tune_report",
    "the search's winner (best.yaml), trials table, importances and figure",
    Arg("--workers", nargs="*", default=[], help="the workers' records (the search is done)"),
    kind=STUDY,
)
def tune_report(job: Job) -> None:
    import pandas as pd

    from rl.tune.report import trials_table, write_best, write_report
    from rl.tune.search import open_study

    cfg = _need_tune(job)
    paths = tuning.files(cfg)
    write_csv(paths["trials"], trials_table(open_study(cfg), cfg))
    table = pd.read_csv(paths["trials"])  # what a reference result rebuilds from
    best = write_best(cfg, table, paths["best"])
    made = write_report(cfg, table, paths["dir"], paths["figures"])
    job.write_provenance(paths["dir"], inputs=job.args.workers)
    job.write_provenance(paths["figures"], inputs=[paths["trials"]])
    done = table[table["state"].isin(["complete", "pruned"])]
    overhead = done["overhead_s"].sum() / max(done["wall_s"].sum(), 1e-9)
    log.info(
        "search %s: %d trials (%s); best trial %d: %.0f frames (seed %d); overhead %.1f%% "
        "of the trials' time; -> %s, %s",
        cfg["study"], len(table), table["state"].value_counts().to_dict(),
        int(best["number"]), best["value"], int(best["seed"]), 100 * overhead,
        paths["best"], ", ".join(map(str, made)),
    )  # fmt: skip


STAGES = (tune_worker, tune_report)
