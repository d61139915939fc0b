"""A real one-node SLURM cluster (munged, slurmctld, slurmd) in a temporary folder, for tests.

Debian's slurm-wlm and munge, no systemd, no accounting database: finished jobs are recorded
by slurmctld's job-completion log (jobcomp/filetxt) and stay visible to squeue/scontrol for
MinJobAge seconds. Fake GPUs (gres on /dev/null-like device nodes) let `--gpus=1` jobs schedule.
With `preemption=True` the node is in two partitions, `low` (the default) and `high`: a job
submitted to `high` that needs a `low` job's CPUs pre-empts it, and SLURM requeues it (same
job id) if it was submitted with `--requeue`.
Needs root (SlurmUser=root) and a free /etc/slurm/slurm.conf: the SLURM jobstep plugin clears
SLURM_CONF before its inner srun, so the default path must lead to this cluster's config; the
link is removed on stop. Every wait has a timeout, so a hang fails instead of blocking.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PREEMPTION = (
    # a partition of higher PriorityTier pre-empts the lower one's jobs; REQUEUE sends them back
    # to the queue under the same job id (JobRequeue=1: also jobs submitted without --requeue)
    "PreemptType=preempt/partition_prio",
    "PreemptMode=REQUEUE",
    "JobRequeue=1",
    "KillWait=5",  # seconds from SIGTERM to SIGKILL for a pre-empted job
)


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneNodeSlurm:
    def __init__(
        self,
        root: Path,
        cpus: int = 8,
        mem_mb: int = 32000,
        gpus: int = 2,
        preemption: bool = False,
        start_timeout: float = 60,
    ):
        self.root = Path(root)
        self.gpus = gpus
        self.preemption = preemption
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.start_timeout = start_timeout
        self.conf = self.root / "etc" / "slurm.conf"
        self.log_dir = self.root / "log"
        self.jobcomp = self.log_dir / "jobcomp.log"
        self.munge_socket = self.root / "munge" / "munge.socket.2"
        self._procs: dict[str, subprocess.Popen] = {}
        self._linked = False

    # -- configuration ---------------------------------------------------------------------
    def _write_config(self) -> None:
        for d in ("etc", "munge", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        r = self.root
        lines = [
            "ClusterName=rltest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={self.log_dir}/slurmctld.log",
            f"SlurmdLogFile={self.log_dir}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=500",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            "MinJobAge=900",  # finished jobs stay visible to squeue/scontrol
            "ReturnToService=2",
            "GresTypes=gpu",
            *(PREEMPTION if self.preemption else ()),
            # A cluster-sized node on a small machine: trust the configured CPUs/memory.
            "SlurmdParameters=config_overrides",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN",
            *self._partitions(),
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        # Fake GPUs: device nodes like /dev/null (slurmd drops a gres without File=).
        for i in range(self.gpus):
            node = self.root / "etc" / f"fakegpu{i}"
            if not node.exists():
                os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        files = f"{self.root}/etc/fakegpu[0-{self.gpus - 1}]"
        (self.conf.parent / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={files} Count={self.gpus}\n"
        )

    def _partitions(self) -> list[str]:
        if not self.preemption:
            return ["PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"]
        part = "Nodes=ALL MaxTime=INFINITE State=UP"
        return [
            f"PartitionName=low {part} Default=YES PriorityTier=1 PreemptMode=REQUEUE",
            f"PartitionName=high {part} PriorityTier=2 PreemptMode=OFF",
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.log_dir / f"{name}.stdout", "wb")
        self._procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{self.logs()}")

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and not Path(os.readlink(SYSTEM_CONF)).exists():
            SYSTEM_CONF.unlink()  # left behind by a killed test run
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise RuntimeError(f"{SYSTEM_CONF} exists: not replacing a real cluster's config")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked = True

    def start(self) -> OneNodeSlurm:
        self._write_config()
        key = self.root / "munge" / "munge.key"
        subprocess.run(["mungekey", "-c", "-f", "-k", str(key)], check=True, timeout=30)
        key.chmod(0o400)
        m = self.root / "munge"
        self._spawn(
            "munged", "munged", "--foreground", "--force", f"--socket={self.munge_socket}",
            f"--key-file={key}", f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
            f"--seed-file={m}/munged.seed",
        )  # fmt: skip
        self._wait("munged", self.munge_socket.exists, 20)
        self._link_system_conf()
        self._spawn("slurmctld", "slurmctld", "-D", "-c", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf))
        self._wait("the node", lambda: self.node_state() == "idle", self.start_timeout)
        return self

    def node_state(self) -> str:
        """The node's state ("idle", "mixed", "drained" ...); sinfo prints a line per
        partition, so a node in two partitions has one state, not two lines of it."""
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"],
                capture_output=True, text=True, timeout=10, env=self.env(),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return ""
        return " ".join(sorted(set(proc.stdout.split())))

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._linked and SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
            self._linked = False

    def __enter__(self) -> OneNodeSlurm:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the cluster recorded ---------------------------------------------------------
    def logs(self, chars: int = 3000) -> str:
        out = []
        for f in sorted(self.log_dir.glob("*")) + [self.root / "munge" / "munged.log"]:
            if f.is_file():
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def completed_jobs(self) -> list[dict[str, str]]:
        """The job-completion records: one dict of KEY=VALUE fields per finished job."""
        if not self.jobcomp.exists():
            return []
        records = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields:
                records.append(fields)
        return records

    def show_job(self, job_id: str) -> dict[str, str]:
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True, text=True, timeout=10, env=self.env(),
        )  # fmt: skip
        return dict(f.split("=", 1) for f in proc.stdout.split() if "=" in f)
