"""The ci study submitted to a real one-node SLURM cluster through workflow/profiles/slurm.

The profile is used as shipped: every rule is an sbatch job (snakemake-executor-plugin-slurm)
that runs inside the training image with apptainer (the kit's podman-backed shim here, behind
a wrapper that records every call's arguments); train_ppo asks for the GPU (a fake gres here)
and only it gets `--nv`. Partition and account come from RL_SLURM_PARTITION /
RL_SLURM_ACCOUNT. What SLURM recorded is read from its job-completion log and slurmdbd.
A second study, followed with `sacct` instead of the profile's squeue, has its training job
pre-empted by a job in a higher-priority partition: SLURM requeues it, it resumes from its
checkpoint and ends as an uninterrupted run does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from support import container_kit as kit
from support import need
from support.resume_checks import assert_one_training_run, assert_same_training, training_result
from support.slurm_cluster import OneNodeSlurm, missing_binaries
from support.workflow import copy_workflow

RUN_TIMEOUT_S = 20 * 60
SLURM_HOW = "apt-get install slurm-wlm munge slurmdbd mariadb-server"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.geteuid() == 0, "a test SLURM cluster needs root (SlurmUser=root)", "run as root")
    missing = missing_binaries(accounting=True)
    need(not missing, f"SLURM/munge/slurmdbd/MariaDB missing: {missing}", SLURM_HOW)
    root = tmp_path_factory.mktemp("slurm")
    with OneNodeSlurm(root, preemption=True, accounting=True, epilog=EPILOG) as c:
        c.add_account("rlproject")
        yield c


# The kit's shim runs a job's container under podman's conmon, outside the job's process
# tree: SLURM's signals reach only the `podman run` client, which the job's snakemake may
# SIGKILL before it passes SIGTERM on, and the container trains on. Under apptainer the
# container's processes are the job's own. So the recorder labels each container with its job
# and the node's epilog (run by slurmd before a job's resources are freed, also on pre-emption)
# kills the job's containers, as a site's epilog does for container runtimes.
RECORDER = """#!/usr/bin/env bash
# records each call's SLURM job id and arguments (NUL-separated), then runs the kit's shim
printf '%s\\0' "${{SLURM_JOB_ID:-}}" "$@" > "{calls}/$(date +%s%N)-$$.argv"
label="--label slurm_job=${{SLURM_JOB_ID:-}}"
export APPTAINER_SHIM_PODMAN_ARGS="${{APPTAINER_SHIM_PODMAN_ARGS:-}} $label"
exec "{shim}" "$@"
"""
EPILOG = """#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
ids=$(podman ps -q --filter "label=slurm_job=$SLURM_JOB_ID")
[ -z "$ids" ] || podman kill $ids >/dev/null 2>&1
exit 0
"""


@pytest.fixture(scope="module")
def apptainer_calls(tmp_path_factory) -> Path:
    """A recording `apptainer` first on PATH; returns the folder of its records."""
    root = tmp_path_factory.mktemp("apptainer-recorder")
    calls = root / "calls"
    calls.mkdir()
    (root / "bin").mkdir()
    wrapper = root / "bin" / "apptainer"
    wrapper.write_text(RECORDER.format(calls=calls, shim=kit.require_kit() / "apptainer"))
    wrapper.chmod(0o755)
    return calls


def _exec_calls(calls: Path) -> list[tuple[str, list[str]]]:
    """(SLURM job id, argv) of every `apptainer exec` the jobs ran."""
    found = []
    for f in sorted(calls.glob("*.argv")):
        job_id, *argv = f.read_bytes().decode().split("\0")[:-1]
        if "exec" in argv:
            found.append((job_id, argv))
    return found


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    kit.build_test_image(tmp_path_factory.mktemp("image"))
    env = dict(e.split("=", 1) for e in kit.inspect()["Config"]["Env"])
    return {"env": env}


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Like subprocess.run, but a hang kills the whole process group and fails."""
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(cmd)} hung for {timeout} s:\n{out[-3000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _env(base: dict, first_on_path: Path) -> dict:
    env = dict(base)
    env.pop("RL_CONTAINER_IMAGE", None)
    env["PATH"] = f"{first_on_path}:{Path(sys.executable).parent}:{env['PATH']}"
    # --init: a PID 1 (catatonit) that passes SLURM's SIGTERM on to the job's python
    env["APPTAINER_SHIM_PODMAN_ARGS"] = f"--user {os.getuid()}:{os.getgid()} --init"
    return env


def _profile_cmd(configfile: str, *targets: str, status: str = "") -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm"]
    if status:  # instead of the profile's squeue
        cmd += ["--slurm-status-command", status]
    cmd += ["--config", f"container=docker://{kit.TEST_IMAGE}"]
    # the profile's 40 s before the first status check is for real clusters
    cmd += ["--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs"]
    return [*cmd, *targets, "--configfile", configfile]  # last: it takes every word after it


def _failure(proc: subprocess.CompletedProcess, cluster, workdir: Path) -> str:
    return f"{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}\n{cluster.logs()}\n" + "\n".join(
        p.read_text()[-2000:] for p in workdir.glob(".snakemake/slurm_logs/**/*.log")
    )


@pytest.fixture(scope="module")
def slurm_run(cluster, image, apptainer_calls, tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("wf-slurm"))
    env = _env(cluster.env(), apptainer_calls.parent / "bin")
    env["RL_SLURM_PARTITION"] = "low"
    env["RL_SLURM_ACCOUNT"] = "rlproject"
    env.pop("RL_SLURM_GPUS", None)  # the profile's default: one GPU for train_ppo
    t0 = time.monotonic()
    proc = _run(_profile_cmd("configs/ci.yaml"), workdir, env, RUN_TIMEOUT_S)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, _failure(proc, cluster, workdir)
    print(f"\nci study on SLURM: {seconds:.1f} s", file=sys.stderr)
    return workdir, proc


def test_the_ci_study_completes_on_slurm_inside_the_image(slurm_run, image):
    workdir, proc = slurm_run
    cfg = yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())
    study = workdir / "results" / cfg["study"]
    assert (study / "figures" / "ppo.png").stat().st_size > 0
    assert (study / "aggregate" / "ppo_summary.csv").is_file()
    for seed in cfg["seeds"]:
        prov = json.loads(
            (study / "default" / f"seed{seed}" / "ppo" / "provenance.json").read_text()
        )
        assert prov["container_image"] == image["env"]["RL_CONTAINER_IMAGE"]


def test_only_the_job_granted_a_gpu_gets_nv(slurm_run, apptainer_calls):
    """The profile's apptainer-args, ${SLURM_GPUS_ON_NODE:+--nv}, expanded in each job's
    shell on the node: --nv for train_ppo (sbatch --gpus=1), nothing for the CPU jobs."""
    workdir, proc = slurm_run
    submitted = _submitted(proc.stdout + proc.stderr)
    calls = _exec_calls(apptainer_calls)
    ran = {job_id for job_id, _ in calls}
    assert ran == set(submitted), f"jobs without an apptainer exec: {set(submitted) - ran}"
    for job_id, argv in calls:
        assert not any("SLURM_GPUS_ON_NODE" in a for a in argv), f"unexpanded: {argv}"
        gpu_job = submitted[job_id] == "train_ppo"
        assert ("--nv" in argv) == gpu_job, f"{submitted[job_id]} (job {job_id}): {argv}"


def _submitted(out: str) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's 'submitted with SLURM jobid N (log: ...)' lines."""
    jobs = {}
    for m in re.finditer(r"SLURM jobid (\d+) \(log: ([^)]*)\)", out):
        rule = re.search(r"slurm_logs/rule_([A-Za-z0-9_]+)/", m.group(2))
        jobs[m.group(1)] = rule.group(1) if rule else "?"
    return jobs


def _planned(out: str) -> Counter:
    """Rule -> job count, from the 'Job stats' table Snakemake prints before running."""
    table = out[out.index("Job stats:") :].splitlines()[3:]
    planned = Counter()
    for line in table:
        if line.startswith("total"):
            break
        rule, count = line.split()
        planned[rule] = int(count)
    return planned


def test_every_job_was_accounted_to_slurm(slurm_run, cluster):
    workdir, proc = slurm_run
    out = proc.stdout + proc.stderr
    submitted = _submitted(out)
    planned = _planned(out)
    planned.pop("all")  # a local rule: no job
    assert Counter(submitted.values()) == planned, submitted
    assert planned["train_ppo"] == len(
        yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())["seeds"]
    )
    records = {r["JobId"]: r for r in cluster.completed_jobs()}
    for job_id, rule in submitted.items():
        rec = records.get(job_id)
        assert rec is not None, f"job {job_id} ({rule}) not in SLURM's completion log"
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", rec
        assert rec["Partition"] == "low" and rec["Account"] == "rlproject", rec
        job = cluster.show_job(job_id)  # finished jobs stay for MinJobAge
        gpus = "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", "")
        assert gpus == (rule == "train_ppo"), f"{rule}: {job}"
    # the profile's per-rule sizes reached sbatch
    train = next(j for j, r in submitted.items() if r == "train_ppo")
    job = cluster.show_job(train)
    assert job["NumCPUs"] == "4" and job["TimeLimit"] == "12:00:00", job
    assert "mem=8000M" in job["TRES"], job


# -- pre-emption -----------------------------------------------------------------------------
PREEMPT_SEED_DIR = Path("results/preempt/default/seed0")
PREEMPT_FRAMES = 12288


def _preempt_config(workdir: Path) -> str:
    """One seed of PPO that checkpoints every other batch and runs long enough to be hit."""
    cfg = yaml.safe_load((workdir / "configs" / "ci.yaml").read_text())
    cfg["study"] = "preempt"
    cfg["seeds"] = [0]
    cfg["ppo"].update(
        total_frames=PREEMPT_FRAMES,
        frames_per_batch=512,
        checkpoint_interval_frames=1024,
        eval_interval_frames=4096,
    )
    (workdir / "configs" / "preempt.yaml").write_text(yaml.safe_dump(cfg))
    return "configs/preempt.yaml"


def _until(what: str, ready, timeout: float, proc: subprocess.Popen | None = None, log=None):
    """Poll `ready()` until it returns something true; fail after `timeout` seconds, or as
    soon as `proc` (the snakemake run) ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"snakemake ended ({proc.returncode}) before {what}:\n{log and log()}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f} s:\n{log and log()}")


def _squeue_job(cluster, rule: str) -> str | None:
    """The id of the queued or running job of `rule` (the plugin's --comment names it)."""
    proc = subprocess.run(
        ["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, timeout=10,
        env=cluster.env(),
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        job_id, _, comment = line.partition(" ")
        if comment.startswith(f"rule_{rule}"):
            return job_id
    return None


def _start_now(cluster, job_id: str, seen: set[str]) -> bool:
    """True once the requeued job runs again. A requeued job waits ~2 min (BeginTime) before
    it may start: not in a test. Its BeginTime is only set once the pre-empted start has
    ended (until then it still shows RUNNING or COMPLETING), so StartTime=now is sent each
    time the job is seen waiting for it, and "runs again" means after it was seen pending."""
    job = cluster.show_job(job_id)
    seen.add(job.get("JobState", ""))
    if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
        subprocess.run(
            ["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
            check=True, timeout=10, env=cluster.env(),
        )  # fmt: skip
    return "PENDING" in seen and job.get("JobState") in ("RUNNING", "COMPLETED")


def _reference_run(root: Path) -> tuple:
    """The same config and seed, uninterrupted, in the same image, without SLURM."""
    workdir = copy_workflow(root)
    configfile = _preempt_config(workdir)
    cmd = [sys.executable, "-m", "snakemake", str(PREEMPT_SEED_DIR / "ppo" / "policy.pt")]
    cmd += ["--cores", "4", "--sdm", "apptainer", "--set-threads", "train_ppo=4"]
    cmd += ["--config", f"container=docker://{kit.TEST_IMAGE}", "--configfile", configfile]
    proc = _run(cmd, workdir, _env(os.environ, kit.require_kit()), RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return training_result(workdir / PREEMPT_SEED_DIR)


@pytest.fixture(scope="module")
def preempted_run(cluster, image, apptainer_calls, tmp_path_factory):
    """train_ppo through the profile in partition `low` on a CPU-only setting
    (RL_SLURM_GPUS=0), pre-empted after its first checkpoint by a job in `high` that needs
    all the node's CPUs; SLURM's ~2 minutes before a requeued job may start are skipped.
    Snakemake follows the jobs with `sacct` (slurmdbd), not the profile's squeue."""
    workdir = copy_workflow(tmp_path_factory.mktemp("wf-preempt"))
    configfile = _preempt_config(workdir)
    env = _env(cluster.env(), apptainer_calls.parent / "bin")
    env.update(RL_SLURM_PARTITION="low", RL_SLURM_GPUS="0")
    env.pop("RL_SLURM_ACCOUNT", None)
    target = str(PREEMPT_SEED_DIR / "ppo" / "policy.pt")
    out = workdir / "snakemake.out"
    t0 = time.monotonic()
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            _profile_cmd(configfile, target, status="sacct"), cwd=workdir, env=env, stdout=sink,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    log = lambda: f"{out.read_text()[-4000:]}\n{cluster.logs()}"  # noqa: E731
    try:
        ckpt = workdir / PREEMPT_SEED_DIR / "ppo" / "checkpoint.pt"
        _until("first checkpoint", ckpt.exists, 600, proc, log)
        train = _squeue_job(cluster, "train_ppo")
        assert train, f"train_ppo is not in squeue:\n{log()}"
        t_ckpt = time.monotonic()
        high = subprocess.run(
            ["sbatch", "--parsable", "-p", "high", "-c", str(cluster.cpus), "--mem", "1000",
             "-o", "/dev/null", "--wrap", "sleep 5"],
            capture_output=True, text=True, timeout=20, env=cluster.env(),
        )  # fmt: skip
        assert high.returncode == 0, high.stderr
        requeued = lambda: cluster.show_job(train).get("Restarts") == "1"  # noqa: E731
        _until("requeue of train_ppo", requeued, 120, proc, log)
        t_requeued = time.monotonic()
        states: set[str] = set()
        restarted = lambda: _start_now(cluster, train, states)  # noqa: E731
        _until("restart of train_ppo", restarted, 120, proc, log)
        t_restarted = time.monotonic()
        _until("end of the workflow", lambda: proc.poll() is not None, RUN_TIMEOUT_S, None, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, log()
    print(
        f"\npre-empted study on SLURM: {seconds:.1f} s (requeued {t_requeued - t_ckpt:.1f} s "
        f"after the first checkpoint was seen, running again {t_restarted - t_requeued:.1f} s "
        "later)",
        file=sys.stderr,
    )
    return {"workdir": workdir, "out": out.read_text(), "train": train, "high": high.stdout.strip()}


def test_a_preempted_training_job_is_requeued_and_resumes_to_the_same_result(
    preempted_run, cluster, tmp_path_factory
):
    workdir, out, train = preempted_run["workdir"], preempted_run["out"], preempted_run["train"]
    job = cluster.show_job(train)
    assert job["JobState"] == "COMPLETED" and job["Restarts"] == "1", job
    assert job["Partition"] == "low", job
    # Snakemake saw one job that succeeded: SLURM requeued it, Snakemake did not resubmit it
    submitted = _submitted(out)
    assert list(submitted.values()).count("train_ppo") == 1, submitted
    assert submitted.get(train) == "train_ppo", submitted
    assert "Trying to restart job" not in out, out[-4000:]
    # the requeued job resumed from the checkpoint its first start wrote
    rule_log = (workdir / "results/preempt/logs/train_ppo/default-seed0.log").read_text()
    resumed = re.search(r"resuming from checkpoint \S+ at frame (\d+)", rule_log)
    assert resumed, f"no resume in the rule's log:\n{rule_log[-3000:]}"
    assert 0 < int(resumed.group(1)) < PREEMPT_FRAMES, resumed.group(0)
    # slurmdbd recorded both starts of the one job, and every job of the run
    assert cluster.sacct(train, duplicates=True) == ["PREEMPTED", "COMPLETED"]
    for job_id in submitted:
        assert cluster.sacct(job_id) == ["COMPLETED"], f"job {job_id} ({submitted[job_id]})"
    high = cluster.show_job(preempted_run["high"])
    assert high["JobState"] == "COMPLETED", high
    assert "drain" not in cluster.node_state(), cluster.node_state()
    t0 = time.monotonic()
    reference = _reference_run(tmp_path_factory.mktemp("wf-preempt-reference"))
    print(f"\nuninterrupted reference: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    assert_same_training(training_result(workdir / PREEMPT_SEED_DIR), reference)
    assert_one_training_run(workdir / "results/preempt", batches=PREEMPT_FRAMES // 512)


def test_a_cpu_only_cluster_gets_no_gpu_request_and_no_nv(preempted_run, cluster, apptainer_calls):
    """RL_SLURM_GPUS=0: train_ppo is submitted without --gpus, and so runs without --nv."""
    train = preempted_run["train"]
    job = cluster.show_job(train)
    assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    assert "gres/gpu" not in job["TRES"], job
    calls = [argv for job_id, argv in _exec_calls(apptainer_calls) if job_id == train]
    assert len(calls) == 2, f"one apptainer exec per start of job {train}: {calls}"
    assert all("--nv" not in argv for argv in calls), calls
