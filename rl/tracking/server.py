"""A team tracking server in one command: PostgreSQL (Debian's `postgresql` package) as
MLflow's backend store and `mlflow server` serving the artifacts over HTTP
(`python -m rl tracking-server`, `make tracking-server`; docs/tracking.md, "A tracking
server for a cluster").

Everything lives in one folder (default `results/tracking-server/`): `postgres/` (the
database cluster, created by `initdb` on first start, reused after), `artifacts/` (what the
server stores for the runs), `logs/`. PostgreSQL listens on a unix socket in that folder
(no password: nothing else on the machine can connect unless it can read the folder);
MLflow listens on `host:port` and is what jobs talk to. With `optuna_port`, PostgreSQL also
listens on TCP there for one database only, `optuna` (a tuning study's trials; its own
database, as Optuna and MLflow both keep an `alembic_version` table), as the role `optuna`
with a password generated once and kept in `optuna-password` (mode 0600).

On a cluster the folder sits on the login or service node's local disk, not on the shared
file system: PostgreSQL wants a local disk, and the point of the server is that jobs on
other nodes never open a database file.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from rl.tracking.serving import ServerError, require_free_port, stop_group, wait_for_health

log = logging.getLogger("rl")

DATABASE = "mlflow"
ROLE = "mlflow"
OPTUNA = "optuna"  # the database and role of tuning studies' trials (over TCP, password)
# Rewritten on every start: the socket trusts its users (the folder is the guard); TCP
# reaches the optuna database only, as the optuna role, with its password.
PG_HBA = """local all all trust
host {db} {db} 0.0.0.0/0 scram-sha-256
host {db} {db} ::/0 scram-sha-256
"""
# A unix socket path must fit in sun_path (108 bytes with ".s.PGSQL.5432" appended).
SOCKET_PATH_MAX = 90
# One MLflow worker runs up to 40 requests at once (anyio's thread limit), and a log_batch
# holds two connections at once (its run check's session and its inserts' session). A pool
# smaller than 2 x 40 can deadlock under a burst of writes: every connection held by a
# request that waits for a second one, answered after SQLAlchemy's 30 s as a 400 error.
REQUESTS_PER_WORKER = 40
CONNECTIONS_PER_WORKER = 2 * REQUESTS_PER_WORKER


def postgres_bindir() -> Path:
    """PostgreSQL's server programs: $RL_PG_BINDIR, else Debian's /usr/lib/postgresql/<v>/bin."""
    wanted = os.environ.get("RL_PG_BINDIR")
    candidates = (
        [wanted] if wanted else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    )
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    where = (
        f"RL_PG_BINDIR={wanted} has no initdb/pg_ctl"
        if wanted
        else ("no PostgreSQL server programs under /usr/lib/postgresql/*/bin")
    )
    raise ServerError(
        f"The tracking server needs PostgreSQL, and {where}. Install Debian's server "
        f"(`sudo apt-get install postgresql`; initdb and pg_ctl are not on PATH there) or set "
        f"RL_PG_BINDIR to the folder holding initdb, pg_ctl and postgres. For one machine no "
        f"server is needed: the embedded sqlite store is the default."
    )


class TrackingServer:
    """PostgreSQL + `mlflow server` under `root`. `start()` returns the tracking URI;
    `stop()` stops both (MLflow first, then PostgreSQL's fast shutdown); a context manager."""

    def __init__(
        self,
        root: str | Path,
        host: str = "127.0.0.1",
        port: int = 5000,
        workers: int = 4,
        allowed_hosts: list[str] | None = None,
        start_timeout: float = 180,
        optuna_port: int | None = None,
        optuna_host: str | None = None,
    ):
        self.root = Path(root).resolve()
        self.host, self.port, self.workers = host, port, workers
        self.allowed_hosts = allowed_hosts
        self.start_timeout = start_timeout
        self.optuna_port, self.optuna_host = optuna_port, optuna_host or host
        self.pg_port = optuna_port or 5432
        self.password_file = self.root / "optuna-password"
        self.data = self.root / "postgres"
        self.artifacts = self.root / "artifacts"
        self.logs = self.root / "logs"
        self._socket_dir: Path | None = None
        self._mlflow: subprocess.Popen | None = None
        self._pg_started = False

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- PostgreSQL ------------------------------------------------------------------------
    def _as_owner(self) -> dict:
        """Run PostgreSQL's programs as `postgres` when we are root (it refuses root)."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError(
                "PostgreSQL refuses to run as root and there is no 'postgres' user to run it "
                "as. Install Debian's postgresql package (it creates the user), or start the "
                "tracking server as an ordinary user."
            ) from None
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _check_reachable(self) -> None:
        """As root, PostgreSQL runs as `postgres`, which must be able to reach the folder."""
        if os.geteuid() != 0:
            return
        for parent in [p for p in self.root.parents if p.exists()]:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise ServerError(
                    f"PostgreSQL runs as the 'postgres' user here (it refuses root), and that "
                    f"user cannot enter {parent} (mode {stat.filemode(os.stat(parent).st_mode)}) "
                    f"to reach {self.root}. Give --dir a folder on a path others may traverse "
                    f"(e.g. /srv/mlflow or /var/tmp/mlflow), or `chmod o+x {parent}`."
                )

    def _chown(self, *paths: Path) -> None:
        owner = self._as_owner()
        for path in paths:
            if owner:
                os.chown(path, owner["user"], owner["group"])

    def _pg(self, program: str, *args: str, check: bool = True, timeout: float = 120):
        cmd = [str(postgres_bindir() / program), *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, **self._as_owner()
        )
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-600:]
            raise ServerError(
                f"PostgreSQL's {program} failed (exit {result.returncode}) for the tracking "
                f"server in {self.root}: {tail}. The full server log is "
                f"{self.logs / 'postgres.log'}; a data folder from another PostgreSQL version "
                f"or a half-finished first start can be moved aside and the server started "
                f"again (a new, empty store)."
            )
        return result

    def _socket_folder(self) -> Path:
        folder = self.root / "socket"
        if len(str(folder)) > SOCKET_PATH_MAX:  # too long for a unix socket: a short one
            folder = Path(tempfile.mkdtemp(prefix="rl-pg-"))
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        self._chown(folder)
        return folder

    def _start_postgres(self) -> None:
        self._check_reachable()
        if (self.data / "postmaster.pid").exists():
            status = self._pg("pg_ctl", "status", "-D", str(self.data), check=False)
            if status.returncode == 0:
                raise ServerError(
                    f"A PostgreSQL server already runs on {self.data} (another tracking server "
                    f"on this folder?). Stop it (Ctrl-C in its terminal, or `pg_ctl stop -D "
                    f"{self.data}`), or give this one another --dir."
                )
        for folder in (self.root, self.logs, self.artifacts):
            folder.mkdir(parents=True, exist_ok=True)
        self._chown(self.root, self.logs)
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            log.info("creating the PostgreSQL database cluster in %s", self.data)
            self.data.mkdir(mode=0o700, exist_ok=True)
            self._chown(self.data)
            self._pg("initdb", "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8")
        self._socket_dir = self._socket_folder()
        listen = self.optuna_host if self.optuna_port else ""
        (self.data / "pg_hba.conf").write_text(PG_HBA.format(db=OPTUNA))
        options = (
            f"-c listen_addresses='{listen}' -p {self.pg_port} -k {self._socket_dir} "
            f"-c max_connections={self.max_connections}"
        )
        self._pg_started = True  # stop() stops a start that a signal interrupted, too
        self._pg(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
            "-l", str(self.logs / "postgres.log"), "-o", options,
        )  # fmt: skip
        if not self._sql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"):
            self._pg("createdb", *self._at(), "-U", ROLE, DATABASE)
        if self.optuna_port:
            self._optuna_database()

    def _at(self) -> list[str]:
        return ["-h", str(self._socket_dir), "-p", str(self.pg_port)]

    def _sql(self, query: str) -> str:
        result = self._pg("psql", *self._at(), "-U", ROLE, "-d", "postgres", "-tAc", query)
        return result.stdout.strip()

    def _optuna_database(self) -> None:
        """The optuna role (its password set from optuna-password, made once) and database."""
        import secrets

        if not self.password_file.is_file():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        password = self.password_file.read_text().strip()
        verb = (
            "ALTER" if self._sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{OPTUNA}'") else "CREATE"
        )
        self._sql(f"{verb} ROLE {OPTUNA} LOGIN PASSWORD '{password}'")
        if not self._sql(f"SELECT 1 FROM pg_database WHERE datname = '{OPTUNA}'"):
            self._pg("createdb", *self._at(), "-U", ROLE, "-O", OPTUNA, OPTUNA)

    @property
    def optuna_storage(self) -> str | None:
        """The tuning studies' storage URL (no password: PGPASSWORD from optuna-password)."""
        if not self.optuna_port:
            return None
        host = "127.0.0.1" if self.optuna_host in ("0.0.0.0", "::") else self.optuna_host
        return f"postgresql+psycopg2://{OPTUNA}@{host}:{self.optuna_port}/{OPTUNA}"

    @property
    def max_connections(self) -> int:
        """Every worker's full pool, and room for psql and PostgreSQL's reserved slots."""
        return self.workers * CONNECTIONS_PER_WORKER + 20

    def mlflow_env(self) -> dict[str, str]:
        """The environment of `mlflow server`: a pool that cannot deadlock (see above); only
        5 connections stay open while idle, the rest open under load and close after."""
        return os.environ | {
            "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "5",
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(CONNECTIONS_PER_WORKER - 5),
        }

    def backend_store_uri(self) -> str:
        return (
            f"postgresql+psycopg2://{ROLE}@/{DATABASE}?host={self._socket_dir}&port={self.pg_port}"
        )

    # -- MLflow ----------------------------------------------------------------------------
    def _start_mlflow(self) -> None:
        allowed = self.allowed_hosts or [
            f"{self.host}:{self.port}", f"localhost:{self.port}", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri(),
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
            "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
            "--allowed-hosts", ",".join(allowed),
        ]  # fmt: skip
        with open(self.logs / "mlflow.log", "ab") as out:
            self._mlflow = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env=self.mlflow_env(),
            )  # fmt: skip
        hint = f"Its log: {self.logs / 'mlflow.log'}; on a loaded machine fewer --workers."
        wait_for_health(self.uri, self._mlflow, self.start_timeout, "mlflow server", hint)

    # -- both ------------------------------------------------------------------------------
    def start(self) -> str:
        postgres_bindir()  # the clear errors before anything is created
        if importlib.util.find_spec("psycopg2") is None:
            raise ServerError(
                "MLflow reaches PostgreSQL through psycopg2, which is not installed in this "
                "environment. Install the project's pins (`make install`, or `pip install "
                "psycopg2-binary==2.9.13`)."
            )
        then = " and put that port in mlflow.tracking_uri"
        require_free_port(self.host, self.port, "make tracking-server", then)
        if self.optuna_port:
            then = " and put that port in tune.storage"
            require_free_port(self.optuna_host, self.optuna_port, "--optuna-port", then)
        try:
            self._start_postgres()
            self._start_mlflow()
        except BaseException:
            self.stop()
            raise
        return self.uri

    def alive(self) -> bool:
        return self._mlflow is not None and self._mlflow.poll() is None

    def stop(self) -> None:
        stop_group(self._mlflow)
        self._mlflow = None
        if self._pg_started:
            self._pg("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data), check=False)
            self._pg_started = False
        if self._socket_dir is not None and not self._socket_dir.is_relative_to(self.root):
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> TrackingServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
