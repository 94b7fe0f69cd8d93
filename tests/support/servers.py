"""Real service processes for tests: a throwaway PostgreSQL cluster, `prefect server start` and
`mlflow server`, each bound to 127.0.0.1 on a free port.

Every process runs in its own process group and is killed as a group when its context exits,
whatever happened inside. Output goes to a log file next to the service's data; `Service.log_tail`
reads it back for failure reports. Usage:

    with postgres_cluster(root, databases=("prefect", "mlflow")) as pg, \
         prefect_server(root / "prefect", pg.url("prefect", driver="asyncpg")) as api, \
         mlflow_server(root / "mlflow", pg.url("mlflow")) as tracking:
        api.wait_ready(), tracking.wait_ready()  # both start side by side
        ...  # api.url is the PREFECT_API_URL, tracking.url the MLflow tracking URI

PostgreSQL comes from the Debian packages (`/usr/lib/postgresql/<version>/bin`, installed by
`scripts/install.sh`); `initdb` and `postgres` refuse to run as root, so under root they run as
the `postgres` system user in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "VENV_BIN",
    "PostgresCluster",
    "ServiceError",
    "Service",
    "find_postgres_bindir",
    "free_port",
    "mlflow_server",
    "postgres_cluster",
    "prefect_environment",
    "prefect_server",
    "start_process",
    "stop_process",
]

VENV_BIN = Path(sys.executable).parent
POSTGRES_FIX = (
    "PostgreSQL server binaries (initdb, postgres) were not found. The server tests need the Debian "
    "`postgresql` package: run `scripts/install.sh` as root (it runs `apt-get install postgresql`), or "
    "`sudo apt-get install postgresql`, or set XLM_PG_BINDIR to a directory holding initdb and postgres."
)
_PG_USER = "xlm"


class ServiceError(RuntimeError):
    """A service could not be set up, did not start, or died while starting."""


@dataclass
class Service:
    """A running server process: its URL, its process group and its log file."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    health_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def wait_ready(self, *, timeout_s: float = 180.0) -> Service:
        """Poll `health_url` until it answers 200; fail fast, with the log, if the process exits."""
        if self.health_url is not None:
            health_url = self.health_url
            _wait_until(self, lambda: _http_ok(health_url), timeout_s=timeout_s, what=health_url)
        return self

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            return f"<no log: {e}>"
        return text[-max_chars:]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(
    name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `argv` in a new process group (so the whole tree can be killed), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise ServiceError(f"{name}: cannot start {argv[0]}: {e}") from e


def stop_process(process: subprocess.Popen, *, first_signal: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal the process group, wait up to `grace_s`, then SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, first_signal)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # Children can outlive the leader (uvicorn workers, MLflow's job runner): always sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _wait_until(service: Service, ready, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with code {service.process.returncode} before {what}; "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.25)
    raise ServiceError(
        f"{service.name} did not report {what} within {timeout_s:.0f} s; log {service.log_path}:\n{service.log_tail()}"
    )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# PostgreSQL


def find_postgres_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`: $XLM_PG_BINDIR, the newest Debian version, or PATH."""
    candidates = []
    if os.environ.get("XLM_PG_BINDIR"):
        candidates.append(Path(os.environ["XLM_PG_BINDIR"]))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version_key(p.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass
class PostgresCluster:
    """A running throwaway cluster; `url(db)` is a SQLAlchemy URL for one of its databases."""

    service: Service
    port: int

    def url(self, database: str, *, driver: str | None = None) -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{_PG_USER}@127.0.0.1:{self.port}/{database}"


def _as_postgres_user(argv: list[str]) -> list[str]:
    """Root cannot run initdb/postgres: run them as the `postgres` system user instead."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServiceError("running as root, but `runuser` (util-linux) is missing: cannot drop to the postgres user")
    return [runuser, "-u", "postgres", "--", *argv]


def _hand_to_postgres_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        shutil.chown(path, user="postgres", group="postgres")
    except LookupError as e:
        raise ServiceError(
            "running as root, but there is no `postgres` system user; the Debian `postgresql` package creates it "
            "(run scripts/install.sh as root)"
        ) from e


@contextlib.contextmanager
def postgres_cluster(log_dir: Path, *, databases: Sequence[str], timeout_s: float = 60.0) -> Iterator[PostgresCluster]:
    """initdb a cluster in a fresh /tmp directory, serve it on 127.0.0.1:<free port>, create
    `databases`, and remove everything on exit. Trust authentication: loopback only, tests only."""
    bindir = find_postgres_bindir()
    if bindir is None:
        raise ServiceError(POSTGRES_FIX)
    # A short /tmp path: the unix socket path must stay under ~100 bytes, and the postgres user
    # must be able to reach it (pytest's tmp dirs are private to root).
    root = Path(tempfile.mkdtemp(prefix="xlm-pg-"))
    log_path = log_dir / "postgres.log"
    process = None
    try:
        _hand_to_postgres_user(root)
        data = root / "data"
        initdb = _as_postgres_user(
            [str(bindir / "initdb"), "-D", str(data), "-U", _PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"]
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            done = subprocess.run(initdb, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise ServiceError(
                f"initdb failed (exit {done.returncode}); log {log_path}:\n{log_path.read_text()[-4000:]}"
            )
        port = free_port()
        argv = [
            str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        process = start_process("postgres", _as_postgres_user(argv), log_path=log_path)
        service = Service("postgres", f"postgresql://{_PG_USER}@127.0.0.1:{port}", process, log_path)
        isready = [str(bindir / "pg_isready"), "-q", "-d", f"{service.url}/postgres"]
        _wait_until(
            service,
            lambda: subprocess.run(isready, check=False, timeout=10).returncode == 0,
            timeout_s=timeout_s,
            what="accepting connections",
        )
        cluster = PostgresCluster(service, port)
        _create_databases(cluster, databases)
        yield cluster
    finally:
        if process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
            stop_process(process, first_signal=signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


def _create_databases(cluster: PostgresCluster, databases: Sequence[str]) -> None:
    try:
        import psycopg2
    except ImportError as e:
        raise ServiceError("psycopg2 is missing from the venv: run scripts/install.sh (psycopg2-binary)") from e

    connection = psycopg2.connect(cluster.url("postgres"))
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            for database in databases:
                cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()


# Prefect


def prefect_environment(api_url: str, home: Path) -> dict[str, str]:
    """Environment for Prefect clients (CLI, workers) of the server at `api_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def prefect_server(directory: Path, database_url: str, *, scheduler_loop_s: float = 2.0) -> Iterator[Service]:
    """`prefect server start` on 127.0.0.1:<free port> against `database_url` (postgresql+asyncpg),
    with its own PREFECT_HOME, no telemetry, no UI, and the scheduler looping every `scheduler_loop_s`.
    Yields as soon as the process started: call `wait_ready()` (servers can start side by side)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(directory / "home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": str(scheduler_loop_s),
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log_path = directory / "prefect-server.log"
    process = start_process("prefect server", argv, log_path=log_path, env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        yield Service("prefect server", url, process, log_path, health_url=f"{url}/health")
    finally:
        stop_process(process)


# MLflow


@contextlib.contextmanager
def mlflow_server(directory: Path, backend_store_uri: str) -> Iterator[Service]:
    """`mlflow server` on 127.0.0.1:<free port> with a PostgreSQL backend store and proxied
    artifacts in `directory/artifacts`. Yields once started: call `wait_ready()`."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = directory / "artifacts"
    artifacts.mkdir(exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # No job runner (a huey consumer for GenAI jobs): one process less, nothing left in /dev/shm.
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"})
    argv = [
        str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--uvicorn-opts", "--no-access-log",  # keep the log's tail for errors
    ]  # fmt: skip
    log_path = directory / "mlflow-server.log"
    process = start_process("mlflow server", argv, log_path=log_path, env=env, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    try:
        yield Service(
            "mlflow server", url, process, log_path, health_url=f"{url}/health", extra={"artifacts": str(artifacts)}
        )
    finally:
        stop_process(process)
