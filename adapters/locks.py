"""Leadership locks with fencing terms: one active executor, scheduler or relay per log.

Both implementations are released by the operating system when the holder dies, so a SIGKILLed
leader never blocks its successor. Each time a lock is taken it starts a new *term*, a number
that only grows (a counter kept under the lock), so work done under a lock can be stamped with
who did it. A holder proves it still holds the lock with ``fence()`` right before each action on
the world, and a successor asks ``term_over(term)`` before it touches anything an earlier term
may still be doing.

Why a successor cannot simply trust that it now holds the lock: a Postgres advisory lock lives
in one database session. When that session is terminated (an operator, a dropped connection,
a failover), the lock is free at once while the old holder's process keeps running until its
next check. The old holder checks before every action and a check counts only if it started
less than ``FRESH_CHECK_SECONDS`` before the action; every check that succeeded was answered
before the successor got the lock. So once the successor has held the lock for longer than its
grace period, nothing the old term started can still be beginning, and a device call that takes
less than the grace period minus that freshness has reached the device's own ledger. Sooner
than that only when the old holder itself recorded that its term is over (``step_down``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

# A lock check older than this does not prove the lock is still held for the next action.
FRESH_CHECK_SECONDS = 0.5
FENCE_ATTEMPTS = 3
DEFAULT_GRACE_SECONDS = 5.0
KEPT_TERMS = 100


class LeadershipLost(Exception):
    """The lock (or the session holding it) is gone: someone else may lead now; stop acting."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderLock(ABC):
    """The port. A holder acts only between a successful ``fence()`` and its next action."""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if free and start a new term; never blocks. True if held after."""

    @abstractmethod
    def release(self) -> None:
        """Let go of the lock without vouching that this term has stopped acting."""

    @property
    @abstractmethod
    def held(self) -> bool:
        """Whether the lock is held right now (a real check, not a remembered flag)."""

    @property
    @abstractmethod
    def term(self) -> int | None:
        """The term of the current holding, or None when not held."""

    @abstractmethod
    def term_over(self, term: int) -> bool:
        """Whether a holder of an earlier ``term`` can no longer act; ask only while holding."""

    def fence(self) -> int:
        """Prove that the lock is held right now; returns the term. Call right before acting.

        Raises LeadershipLost when it is not held, or when checks keep taking so long that a
        successful one proves nothing about the moment of the action.
        """
        for _ in range(FENCE_ATTEMPTS):
            started = time.monotonic()
            term = self.term
            if term is None or not self.held:
                raise LeadershipLost("the leader lock is no longer held")
            if time.monotonic() - started <= FRESH_CHECK_SECONDS:
                return term
        raise LeadershipLost(f"lock checks take longer than {FRESH_CHECK_SECONDS}s; stepping down")

    def step_down(self) -> None:
        """Record that this term will not act again, then release. Only after work stopped."""
        self.release()

    def acquire(self, timeout: float, stop: threading.Event | None = None) -> bool:
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline or stop.wait(0.2):
                return False
        return True


class FileLeaderLock(LeaderLock):
    """An ``flock`` on a file; the term counter and its holder in a file beside it.

    The kernel drops a flock only when its holder closes the file or dies, so an earlier term is
    over once its holder stepped down (a marker file per term) or its process is gone. Only a
    lock file deleted under a live holder lets two hold it at once: ``held`` notices that at the
    holder's next check, and the successor waits for the marker, the death, or its grace period.
    """

    def __init__(self, path: Path, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._term_path = path.with_name(path.name + ".term")
        self._grace = grace_seconds
        self._fd: int | None = None
        self._term: int | None = None
        self._previous: tuple[int, str] = (0, "")
        self._acquired_at = 0.0

    def try_acquire(self) -> bool:
        if self._fd is not None:
            if self.held:
                return True
            self.release()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            if not self._same_file(fd):  # replaced between open and flock: not the lock file
                os.close(fd)
                return False
            self._previous = self._read_term()
            term = self._previous[0] + 1
            _write_atomically(self._term_path, f"{term} {_process_identity(os.getpid())}")
            self._forget_markers_before(term - KEPT_TERMS)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._term, self._acquired_at = fd, term, time.monotonic()
        return True

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self._path).st_ino
        except FileNotFoundError:
            return False

    def _read_term(self) -> tuple[int, str]:
        try:
            term, _, holder = self._term_path.read_text().strip().partition(" ")
        except FileNotFoundError:
            return 0, ""
        return int(term or 0), holder

    def _marker(self, term: int) -> Path:
        return self._path.with_name(f"{self._path.name}.ended.{term}")

    def _forget_markers_before(self, term: int) -> None:
        for marker in self._path.parent.glob(f"{self._path.name}.ended.*"):
            suffix = marker.name.rsplit(".", 1)[-1]
            if suffix.isdigit() and int(suffix) < term:
                marker.unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._term = None

    def step_down(self) -> None:
        if self._term is not None:
            _write_atomically(self._marker(self._term), "ended")
        self.release()

    @property
    def held(self) -> bool:
        # A deleted or replaced lock file would let a second process lock the new one.
        return self._fd is not None and self._same_file(self._fd)

    @property
    def term(self) -> int | None:
        return self._term if self._fd is not None else None

    def term_over(self, term: int) -> bool:
        own = self.term
        if own is None or term >= own or not self.held:
            return False
        if self._marker(term).exists() or time.monotonic() - self._acquired_at >= self._grace:
            return True
        previous, holder = self._previous
        if term == previous:
            return not holder or not _process_alive(holder)
        return previous == 0  # no term was ever recorded: nothing of an earlier term can run


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first); None if unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_identity(pid: int) -> str:
    """``pid:start``: the start time tells a reused pid from the process that held the lock."""
    fields = _proc_stat(pid)
    return f"{pid}:{fields[19] if fields and len(fields) > 19 else '?'}"


def _process_alive(identity: str) -> bool:
    pid_text, _, start = identity.partition(":")
    if not pid_text.isdigit():
        return True  # cannot tell: assume it may still act
    fields = _proc_stat(int(pid_text))
    if fields is not None:
        # A zombie (killed, not yet reaped) runs no code any more.
        return fields[0] not in ("Z", "X") and (start == "?" or fields[19] == start)
    try:
        os.kill(int(pid_text), 0)  # no /proc here: the pid alone has to do
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return True


TERMS_TABLE = "janus_leader_terms"
_TABLE_KEY = int.from_bytes(hashlib.sha256(TERMS_TABLE.encode()).digest()[:8], "big", signed=True)


class PostgresLeaderLock(LeaderLock):
    """A session-level advisory lock on a dedicated connection; terms in ``janus_leader_terms``.

    The term row is written while the advisory lock is held, so terms of one lock name never
    repeat or go back. ``step_down`` stamps ``ended_at`` on the row, which lets a successor act
    on that term's unfinished work without waiting out its grace period.
    """

    def __init__(
        self,
        conninfo: str,
        name: str,
        connect_timeout: int = 3,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self._conninfo = conninfo
        self._name = name
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._connect_timeout = connect_timeout
        self._grace = grace_seconds
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._term: int | None = None
        self._acquired_at = 0.0
        self._mutex = threading.RLock()  # the connection is shared by a duty and its owner

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        # Keepalives let both sides notice a dead peer; the timeout keeps a check from hanging.
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            options=f"-c statement_timeout={max(1, self._connect_timeout) * 1000}",
        )

    def try_acquire(self) -> bool:
        with self._mutex:
            if self._conn is not None:
                if self._alive():
                    return True
                self.release()
            conn = self._connect()
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                if not row or not row[0]:
                    conn.close()
                    return False
                term = self._start_term(conn)
            except BaseException:
                conn.close()  # never keep a session that may hold the lock for nobody
                raise
            self._conn, self._term, self._acquired_at = conn, term, time.monotonic()
            return True

    def _start_term(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        with conn.transaction():
            # CREATE TABLE IF NOT EXISTS races with itself on the catalog; serialise it.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_TABLE_KEY,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TERMS_TABLE} (name text NOT NULL,"
                " term bigint NOT NULL, holder text NOT NULL,"
                " acquired_at timestamptz NOT NULL DEFAULT now(), ended_at timestamptz,"
                " PRIMARY KEY (name, term))"
            )
            row = conn.execute(
                f"INSERT INTO {TERMS_TABLE} (name, term, holder)"
                f" SELECT %s, COALESCE(MAX(term), 0) + 1, %s FROM {TERMS_TABLE} WHERE name = %s"
                " RETURNING term",
                (self._name, holder_name(), self._name),
            ).fetchone()
            assert row is not None
            term = int(str(row[0]))
            # Only recent terms can still matter to anyone; keep the table small.
            conn.execute(
                f"DELETE FROM {TERMS_TABLE} WHERE name = %s AND term < %s",
                (self._name, term - KEPT_TERMS),
            )
        return term

    def _alive(self) -> bool:
        """One round trip on the lock's session; a session that fails it is closed for good."""
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            # Closing also ends the session if it still exists, so the lock cannot leak.
            self.release()
            return False
        return True

    def release(self) -> None:
        with self._mutex:
            conn, self._conn, self._term = self._conn, None, None
            if conn is not None:
                conn.close()  # closing the session releases the lock

    @property
    def held(self) -> bool:
        with self._mutex:
            return self._alive()

    @property
    def term(self) -> int | None:
        return self._term

    def term_over(self, term: int) -> bool:
        with self._mutex:
            own = self._term
            if own is None or term >= own or not self._alive():
                return False
            if time.monotonic() - self._acquired_at >= self._grace:
                return True
            assert self._conn is not None
            row = self._conn.execute(
                f"SELECT ended_at IS NOT NULL FROM {TERMS_TABLE} WHERE name = %s AND term = %s",
                (self._name, term),
            ).fetchone()
            return bool(row and row[0])

    def step_down(self) -> None:
        with self._mutex:
            term = self._term
            if term is not None:
                self._record_end(term)
            self.release()

    def _record_end(self, term: int) -> None:
        """Best effort: without it the successor waits out its grace period instead."""
        query = f"UPDATE {TERMS_TABLE} SET ended_at = now() WHERE name = %s AND term = %s"
        try:
            if self._alive():
                assert self._conn is not None
                self._conn.execute(query, (self._name, term))
                return
            with self._connect() as conn:  # the lock's own session is gone
                conn.execute(query, (self._name, term))
        except psycopg.Error as error:
            log.warning("could not record the end of term %s of %s: %s", term, self._name, error)
