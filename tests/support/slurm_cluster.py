"""A real one-node SLURM cluster (munged, slurmctld, slurmd) in a temporary folder, for tests.

Debian's slurm-wlm and munge, no systemd: finished jobs are recorded by slurmctld's
job-completion log (jobcomp/filetxt) and stay visible to squeue/scontrol for MinJobAge
seconds. Fake GPUs (gres on /dev/null-like device nodes) let `--gpus=1` jobs schedule.
With `preemption=True` the node is in two partitions, `low` (the default) and `high`: a job
submitted to `high` that needs a `low` job's CPUs pre-empts it, and SLURM requeues it (same
job id) if it was submitted with `--requeue`. With `accounting=True` a MariaDB server and
slurmdbd (Debian's mariadb-server, slurmdbd), both in the temporary folder, record the jobs,
so `sacct` works; without it there is no accounting database.
Needs root (SlurmUser=root) and a free /etc/slurm/slurm.conf: the SLURM jobstep plugin clears
SLURM_CONF before its inner srun, so the default path must lead to this cluster's config; the
link is removed on stop. Every wait has a timeout, so a hang fails instead of blocking.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from .services import free_port

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
ACCOUNTING_BINARIES = ("slurmdbd", "sacct", "mariadbd", "mariadb-install-db", "mariadb")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
DB_PASSWORD = "rltest-slurmdbd"  # a throw-away server on 127.0.0.1, removed with the folder
PREEMPTION = (
    # a partition of higher PriorityTier pre-empts the lower one's jobs; REQUEUE sends them back
    # to the queue under the same job id (JobRequeue=1: also jobs submitted without --requeue)
    "PreemptType=preempt/partition_prio",
    "PreemptMode=REQUEUE",
    "JobRequeue=1",
    "KillWait=5",  # seconds from SIGTERM to SIGKILL for a pre-empted job
)


def missing_binaries(accounting: bool = False) -> list[str]:
    wanted = BINARIES + (ACCOUNTING_BINARIES if accounting else ())
    return [b for b in wanted if shutil.which(b) is None]


class OneNodeSlurm:
    def __init__(
        self,
        root: Path,
        cpus: int = 8,
        mem_mb: int = 32000,
        gpus: int = 2,
        preemption: bool = False,
        accounting: bool = False,
        epilog: str = "",
        start_timeout: float = 60,
    ):
        self.root = Path(root)
        self.gpus = gpus
        self.preemption = preemption
        self.accounting = accounting
        self.epilog = epilog  # a script slurmd runs as root when a job ends on the node
        self.db_socket = self.root / "db" / "mariadb.sock"
        self.db_port = self.dbd_port = 0
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
        for d in ("etc", "munge", "state", "spool", "log", "db"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        r = self.root
        lines = [
            "ClusterName=rltest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
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
            *self._accounting_settings(),
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            "MinJobAge=900",  # finished jobs stay visible to squeue/scontrol
            "ReturnToService=2",
            "GresTypes=gpu",
            *(PREEMPTION if self.preemption else ()),
            *([f"Epilog={r}/etc/epilog"] if self.epilog else []),
            # A cluster-sized node on a small machine: trust the configured CPUs/memory.
            "SlurmdParameters=config_overrides",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN",
            *self._partitions(),
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        if self.epilog:
            (r / "etc" / "epilog").write_text(self.epilog)
            (r / "etc" / "epilog").chmod(0o755)
        # Fake GPUs: device nodes like /dev/null (slurmd drops a gres without File=).
        for i in range(self.gpus):
            node = self.root / "etc" / f"fakegpu{i}"
            if not node.exists():
                os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        files = f"{self.root}/etc/fakegpu[0-{self.gpus - 1}]"
        (self.conf.parent / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={files} Count={self.gpus}\n"
        )

    def _accounting_settings(self) -> list[str]:
        if not self.accounting:
            return ["AccountingStorageType=accounting_storage/none"]
        self.db_port, self.dbd_port = free_port(), free_port()
        dbd = self.conf.parent / "slurmdbd.conf"  # slurmdbd reads it beside slurm.conf
        dbd.write_text(
            "\n".join([
                "AuthType=auth/munge",
                f"AuthInfo=socket={self.munge_socket}",
                "DbdHost=localhost",
                "DbdAddr=127.0.0.1",
                f"DbdPort={self.dbd_port}",
                "SlurmUser=root",
                f"LogFile={self.log_dir}/slurmdbd.log",
                f"PidFile={self.root}/slurmdbd.pid",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={self.db_port}",
                "StorageUser=slurm",
                f"StoragePass={DB_PASSWORD}",
                "StorageLoc=slurm_acct_db",
            ]) + "\n"
        )  # fmt: skip
        dbd.chmod(0o600)  # slurmdbd refuses a config others may read
        return [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={self.dbd_port}",
            f"AccountingStoragePass={self.munge_socket}",
        ]

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
        if self.accounting:
            self._start_accounting()
        self._link_system_conf()
        self._spawn("slurmctld", "slurmctld", "-D", "-c", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf))
        self._wait("the node", lambda: self.node_state() == "idle", self.start_timeout)
        if self.accounting:  # slurmctld adds its cluster to slurmdbd when it first connects
            self._wait(
                "the cluster in slurmdbd", lambda: "rltest" in self._sacctmgr("show", "cluster"), 60
            )
        return self

    def _sacctmgr(self, *args: str) -> str:
        proc = subprocess.run(
            ["sacctmgr", "-i", "-n", *args],
            capture_output=True, text=True, timeout=30, env=self.env(),
        )  # fmt: skip
        return proc.stdout + proc.stderr

    def add_account(self, name: str) -> None:
        """An account the current user may submit to. The SLURM executor plugin checks `-A`
        against slurmdbd's accounts (sacctmgr) and refuses a job to an unknown one."""
        user = pwd.getpwuid(os.getuid()).pw_name
        self._sacctmgr("add", "account", name)
        self._sacctmgr("add", "user", user, f"Account={name}")
        found = self._sacctmgr("show", "association", f"user={user}", "format=Account")
        if name not in found.split():
            raise RuntimeError(f"account {name} not added for {user}: {found}")

    def _start_accounting(self) -> None:
        """MariaDB with a `slurm` user, then slurmdbd on it; the cluster registers itself."""
        db = self.root / "db"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={db}/data",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self._spawn(
            "mariadbd", "mariadbd", "--no-defaults", "--user=root", f"--datadir={db}/data",
            f"--socket={self.db_socket}", f"--port={self.db_port}", "--bind-address=127.0.0.1",
            f"--pid-file={db}/mariadb.pid", f"--log-error={self.log_dir}/mariadb.log",
            "--innodb-buffer-pool-size=64M",
        )  # fmt: skip
        self._wait("mariadbd", self.db_socket.exists, 60)
        grant = (
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
            " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        subprocess.run(
            ["mariadb", "--no-defaults", "-S", str(self.db_socket), "-u", "root", "-e", grant],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self._spawn("slurmdbd", "slurmdbd", "-D")
        self._wait("slurmdbd", lambda: self._port_open(self.dbd_port), 60)

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

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
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
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

    def sacct(self, job_id: str, duplicates: bool = False) -> list[str]:
        """The states slurmdbd recorded for a job (with `duplicates`, one per start)."""
        cmd = ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"]
        proc = subprocess.run(
            cmd + (["--duplicates"] if duplicates else []),
            capture_output=True, text=True, timeout=30, env=self.env(), check=True,
        )  # fmt: skip
        return proc.stdout.split()
