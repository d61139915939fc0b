"""32 processes log at once, through StageRun as Snakemake's parallel jobs
do, to the embedded sqlite store on the local disk and to the PostgreSQL-backed tracking
server over HTTP; afterwards every param, metric step and artifact is counted: nothing lost,
nothing duplicated, nothing misfiled. Each store's throughput (metric points/s while the
writers run) is printed; docs/tracking.md records it."""

import faulthandler
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import subprocess
import time
import traceback

import pytest

from rl.core import config as config_mod
from rl.tracking import server as server_mod
from rl.tracking import store as tracking
from rl.tracking.run import StageRun

WORKERS, ROUNDS, STEPS, KEYS, ARTIFACTS = 32, 1, 60, ("reward", "loss", "lr"), 3
DEADLINE_S = 900  # ~2 min on a quiet 2-core machine; 7x that is a hang, not a slow machine
TOKEN = "s3cr3t-T0KEN"  # a bearer token in the jobs' environment, never recorded


def _worker(cfg, marker, seed, barrier, out_dir, spans):
    """One writer; a failure goes back on `spans` with its traceback, so the test's own
    message says why a writer died (a child's stderr is not in CI's summary)."""
    try:
        _write(cfg, marker, seed, barrier, out_dir, spans)
    except BaseException:
        spans.put(("failed", seed, traceback.format_exc()[-3000:]))
        raise


def _write(cfg, marker, seed, barrier, out_dir, spans):
    os.environ["MLFLOW_TRACKING_TOKEN"] = TOKEN
    # a worker still busy near the deadline prints where each of its threads waits
    faulthandler.dump_traceback_later(DEADLINE_S - 120, exit=False)
    provenance = {"config_hash": config_mod.config_hash(cfg), "rule": "stress"}
    for rnd in range(ROUNDS):
        files = []
        for k in range(ARTIFACTS):
            path = out_dir / f"r{rnd}-s{seed}-{k}.json"
            path.write_text(json.dumps({"round": rnd, "seed": seed, "k": k}))
            files.append(path)
        barrier.wait(timeout=900)  # every worker starts the round at the same moment
        t0 = time.time()
        with StageRun(cfg, marker, f"stress{rnd}", provenance, seed) as run:
            for step in range(STEPS):
                run.log_metrics({key: step * (i + 1) + seed for i, key in enumerate(KEYS)}, step)
            run.log_artifacts(files)
        spans.put((rnd, t0, time.time()))


def _store(kind, ci_config, tmp_path, mlflow_empty_db, request):
    """The study's config and marker for `kind`; the store initialised once, before the jobs."""
    ci_config |= {"results_dir": str(tmp_path / "results"), "seeds": list(range(WORKERS))}
    ci_config["mlflow"] = {"flush_every": 7, "experiment": f"load-{kind}"}  # interleaved batches
    marker = tmp_path / "results" / "ci" / "mlflow" / "initialised.json"
    marker.parent.mkdir(parents=True)
    if kind != "sqlite":
        ci_config["mlflow"]["tracking_uri"] = request.getfixturevalue("tracking_server").uri
    else:
        shutil.copy(mlflow_empty_db, marker.parent / "mlflow.db")
    cfg = config_mod.validate(ci_config)
    return cfg, marker, tracking.init_store(cfg, cfg["seeds"], ["default"], marker)


def _unusual(log: str) -> list[str]:
    return [line for line in log.splitlines() if not re.search(r'HTTP/1\.1" 2\d\d ', line)]


def _spans(spans, procs, request) -> list[tuple]:
    """Every worker's (round, start, end), or a failure as soon as a worker dies or the
    deadline passes, naming the workers and showing the server's log (a hang on the server
    otherwise waits out MLflow's 7 retries of 120 s each, per request)."""
    timings, failures, deadline = [], {}, time.monotonic() + DEADLINE_S

    def take(item: tuple) -> None:
        if item[0] == "failed":
            failures[item[1]] = item[2]
        else:
            timings.append(item)

    while len(timings) < WORKERS * ROUNDS:
        try:
            take(spans.get(timeout=5))
        except queue.Empty:
            pass
        crashed = any(p.exitcode not in (None, 0) for p in procs)
        if crashed or failures or time.monotonic() > deadline:
            time.sleep(2)  # the other writers' failures of the same moment
            while True:
                try:
                    take(spans.get_nowait())
                except queue.Empty:
                    break
            dead = {i: p.exitcode for i, p in enumerate(procs) if p.exitcode not in (None, 0)}
            waiting = [i for i, p in enumerate(procs) if p.exitcode is None]
            for p in procs:
                p.terminate()
            log = ""
            if request is not None:
                folder = request.getfixturevalue("tracking_server").logs
                log = "".join(  # what is not an answered request: errors, warnings
                    f"\n--- {f.name}, last 40 lines other than 2xx answers ---\n"
                    + "\n".join(_unusual(f.read_text(errors="replace"))[-40:])
                    for f in sorted(folder.glob("*.log"))
                )
            tracebacks = "".join(
                f"\n--- writer {seed} ---\n{text}" for seed, text in sorted(failures.items())
            )
            pytest.fail(
                f"{len(timings)} of {WORKERS * ROUNDS} writers finished; exit codes of the "
                f"failed ones {dead}, still running: {waiting} "
                f"({time.monotonic() - deadline + DEADLINE_S:.0f} s after the start)."
                f"{tracebacks}{log}"
            )
    return timings


@pytest.mark.parametrize("kind", ["sqlite", "server"])
def test_parallel_writers_lose_and_duplicate_nothing(
    kind, ci_config, tmp_path, mlflow_empty_db, request
):
    from mlflow.tracking import MlflowClient

    cfg, marker, info = _store(kind, ci_config, tmp_path, mlflow_empty_db, request)
    ctx = mp.get_context("spawn")
    barrier, spans = ctx.Barrier(WORKERS), ctx.Queue()
    procs = []
    for seed in range(WORKERS):
        out = tmp_path / f"w{seed}"
        out.mkdir()
        procs.append(ctx.Process(target=_worker, args=(cfg, marker, seed, barrier, out, spans)))
    for p in procs:
        p.start()
    timings = _spans(spans, procs, request if kind == "server" else None)
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    client = MlflowClient(tracking.tracking_uri(cfg))
    assert client.search_runs(["0"]) == []  # nothing misfiled into "Default"
    runs = client.search_runs([info["experiment_id"]], "tags.`rl.kind` = 'stage'", max_results=1000)
    n_params = len(config_mod.flatten(cfg))
    counts = {"runs": len(runs), "params": 0, "metric_points": 0, "artifacts": 0}
    seen = set()
    for run in runs:
        tags = run.data.tags
        key = (tags["rl.stage"], int(tags["rl.seed"]))
        assert key not in seen  # one run per stage and seed
        seen.add(key)
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == info["parents"][f"default/seed{key[1]}"]
        assert len(run.data.params) == n_params
        recorded = [*run.data.params.values(), *tags.values()]
        assert not [v for v in recorded if TOKEN in v]  # credentials never in params or tags
        counts["params"] += len(run.data.params)
        for i, name in enumerate(KEYS):
            history = client.get_metric_history(run.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(STEPS)), (key, name)
            assert all(m.value == m.step * (i + 1) + key[1] for m in history)
            counts["metric_points"] += len(history)
        rnd = int(key[0].removeprefix("stress"))
        files = sorted(f.path for f in client.list_artifacts(run.info.run_id))
        assert files == [f"r{rnd}-s{key[1]}-{k}.json" for k in range(ARTIFACTS)]
        counts["artifacts"] += len(files)
    assert seen == {(f"stress{r}", s) for r in range(ROUNDS) for s in range(WORKERS)}
    expected = WORKERS * ROUNDS
    assert counts == {
        "runs": expected,
        "params": expected * n_params,
        "metric_points": expected * STEPS * len(KEYS),
        "artifacts": expected * ARTIFACTS,
    }
    busy = sum(
        max(end for r, _, end in timings if r == rnd) - min(t0 for r, t0, _ in timings if r == rnd)
        for rnd in range(ROUNDS)
    )
    print(
        f"\n{kind}: {WORKERS} processes x {ROUNDS} rounds, {counts}; "
        f"{counts['metric_points'] / busy:.0f} metric points/s "
        f"({busy:.1f} s with every writer running, each run also creating itself, logging "
        f"{n_params} params, tags, {ARTIFACTS} artifacts and the config)"
    )


STALL_S = 60  # past SQLAlchemy's 30 s wait for a pooled connection, with room to spare


def _stall_writer(cfg, marker, seed, barrier, spans):
    try:
        barrier.wait(timeout=300)
        t0 = time.time()
        with StageRun(cfg, marker, "stall", {"config_hash": "stall"}, seed) as run:
            run.log_metrics({"x": float(seed)}, 0)
            run.flush()
        spans.put(("stall", t0, time.time()))
    except BaseException:
        spans.put(("failed", seed, traceback.format_exc()[-3000:]))
        raise


def test_a_database_stall_past_the_pool_timeout_fails_no_writer(
    ci_config, tmp_path, tracking_server, request
):
    """A database that holds every write for longer than SQLAlchemy's 30 s pool timeout (a
    long lock, a slow disk, a starved CPU) delays the writers, never fails them: each
    server worker's pool has two connections for every request it runs at once. 32
    writers on 2 workers put 16 or more requests on one worker, past a default pool."""
    cfg, marker, _ = _store("stall", ci_config, tmp_path, None, request)
    psql = [
        str(server_mod.postgres_bindir() / "psql"), "-h", str(tracking_server._socket_dir),
        "-U", server_mod.ROLE, "-d", server_mod.DATABASE, "-v", "ON_ERROR_STOP=1",
    ]  # fmt: skip
    ctx = mp.get_context("spawn")
    barrier, spans = ctx.Barrier(WORKERS + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_stall_writer, args=(cfg, marker, seed, barrier, spans))
        for seed in range(WORKERS)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)  # the stall starts as the writers do
    lock = subprocess.Popen(
        [*psql, "-c", "BEGIN", "-c", "LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE",
         "-c", f"SELECT pg_sleep({STALL_S})", "-c", "COMMIT"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        **tracking_server._as_owner(),
    )  # fmt: skip
    try:
        timings = _spans(spans, procs, request)
        for p in procs:
            p.join(timeout=60)
    finally:
        try:
            output = lock.communicate(timeout=STALL_S + 30)[0]
        except subprocess.TimeoutExpired:
            lock.kill()
            output = lock.communicate()[0]
    assert "LOCK TABLE" in output and "COMMIT" in output, output  # held, then let go
    assert [p.exitcode for p in procs] == [0] * WORKERS
    assert max(end - t0 for _, t0, end in timings) > 30  # the stall outlasted the pool timeout
