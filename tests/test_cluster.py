"""The ci study submitted to a real one-node SLURM cluster through workflow/profiles/slurm.

The profile is used as shipped: every rule is an sbatch job (snakemake-executor-plugin-slurm)
that runs inside the training image with apptainer (the kit's podman-backed shim here) and
`--nv`; train_ppo asks for the GPU (a fake gres here). Partition and account come from
RL_SLURM_PARTITION / RL_SLURM_ACCOUNT. What SLURM recorded is read from its job-completion log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import container_kit as kit
import pytest
import yaml
from slurm_cluster import OneNodeSlurm, missing_binaries

REPO = kit.REPO
pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 20 * 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    kit.need(os.geteuid() == 0, "a test SLURM cluster needs root (SlurmUser=root)")
    kit.need(not missing_binaries(), f"SLURM/munge missing: {missing_binaries()}")
    with OneNodeSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c


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


@pytest.fixture(scope="module")
def slurm_run(cluster, image, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf-slurm")
    for name in ("Snakefile", "workflow", "configs", "rl"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, workdir / name)
    env = cluster.env()
    env.pop("RL_CONTAINER_IMAGE", None)
    env["PATH"] = f"{kit.kit_dir()}:{Path(sys.executable).parent}:{env['PATH']}"
    env["APPTAINER_SHIM_PODMAN_ARGS"] = f"--user {os.getuid()}:{os.getgid()}"
    env["RL_SLURM_PARTITION"] = "debug"
    env["RL_SLURM_ACCOUNT"] = "rlproject"
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm"]
    cmd += ["--configfile", "configs/ci.yaml", "--config", f"container=docker://{kit.TEST_IMAGE}"]
    # the profile's 40 s before the first status check is for real clusters
    cmd += ["--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs"]
    t0 = time.monotonic()
    proc = _run(cmd, workdir, env, RUN_TIMEOUT_S)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, (
        f"{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}\n{cluster.logs()}\n"
        + "\n".join(p.read_text()[-2000:] for p in workdir.glob(".snakemake/slurm_logs/**/*.log"))
    )
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
    # the profile's apptainer-args reached apptainer inside the jobs (the shim ignores --nv)
    assert "--nv ignored" in _slurm_logs(workdir)


def _slurm_logs(workdir: Path) -> str:
    return "\n".join(p.read_text() for p in workdir.glob(".snakemake/slurm_logs/**/*.log"))


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
        assert rec["Partition"] == "debug" and rec["Account"] == "rlproject", rec
        job = cluster.show_job(job_id)  # finished jobs stay for MinJobAge
        gpus = "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", "")
        assert gpus == (rule == "train_ppo"), f"{rule}: {job}"
    # the profile's per-rule sizes reached sbatch
    train = next(j for j, r in submitted.items() if r == "train_ppo")
    job = cluster.show_job(train)
    assert job["NumCPUs"] == "4" and job["TimeLimit"] == "12:00:00", job
    assert "mem=8000M" in job["TRES"], job
