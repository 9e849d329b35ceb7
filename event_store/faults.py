"""Store failures named by their cause, and a breaker that fails fast while the store is down.

psycopg reports most outages as one ``OperationalError`` and the pool as "couldn't get a
connection after N sec", which tells an operator nothing. Here each failure gets a short cause
(lock timeout, connection refused, authentication failed, no such database, read-only
database...) that the CLI prints and the API answers in its 503. A pool timeout is explained by
one direct connection attempt, which fails with the real reason (or succeeds: then the pool is
busy, not the store down).

Once a connection-level cause is seen, the store is known down: every checkout fails at once
with that cause instead of waiting for the pool's timeout, and one caller at a time re-probes
with a direct connection every ``reprobe_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import psycopg.errors as pg
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

LOCK_TIMEOUT = "lock timeout"
READ_ONLY = "read-only database"
REFUSED = "connection refused"
AUTH_FAILED = "authentication failed"
NO_DATABASE = "no such database"
UNREACHABLE = "server unreachable"
TOO_MANY = "too many connections"
NOT_ACCEPTING = "server starting up or shutting down"
LOST = "connection lost"
POOL_BUSY = "connection pool busy"

# Causes that mean no new connection can be made: the breaker opens on these.
DOWN = frozenset({REFUSED, AUTH_FAILED, NO_DATABASE, UNREACHABLE, TOO_MANY, NOT_ACCEPTING})

_MESSAGES = (
    ("does not exist", NO_DATABASE),  # 'database "x" does not exist' (role: checked first)
    ("connection refused", REFUSED),
    ("no such file or directory", REFUSED),  # a Unix socket with no server behind it
    ("timeout expired", UNREACHABLE),
    ("could not translate host name", UNREACHABLE),
    ("no route to host", UNREACHABLE),
    ("network is unreachable", UNREACHABLE),
    ("too many clients", TOO_MANY),
    ("the database system is", NOT_ACCEPTING),
    ("server closed the connection", LOST),
    ("consuming input failed", LOST),
    ("terminating connection", LOST),
    ("connection is closed", LOST),
    ("connection is lost", LOST),
)
_AUTH = ("password authentication failed", "no pg_hba.conf entry", "role ", "authentication")
_BY_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (pg.LockNotAvailable, LOCK_TIMEOUT),
    (pg.ReadOnlySqlTransaction, READ_ONLY),
    (pg.TooManyConnections, TOO_MANY),
    (pg.CannotConnectNow, NOT_ACCEPTING),
    (pg.InvalidPassword, AUTH_FAILED),
    (pg.InvalidAuthorizationSpecification, AUTH_FAILED),
    (pg.InvalidCatalogName, NO_DATABASE),
    (pg.AdminShutdown, LOST),
)
_HINTS = {
    LOCK_TIMEOUT: "another session holds a lock on the event store (a stuck writer?)",
    READ_ONLY: "the database refuses writes (a standby, or default_transaction_read_only)",
    REFUSED: "nothing accepts connections there; is Postgres running?",
    AUTH_FAILED: "check the user and password in JANUS_DATABASE_URL",
    NO_DATABASE: "check the database name in JANUS_DATABASE_URL",
    UNREACHABLE: "check the host and port in JANUS_DATABASE_URL",
    TOO_MANY: "the server has no connection slots left",
    NOT_ACCEPTING: "retry in a moment",
    LOST: "the server closed the connection",
    POOL_BUSY: "every pooled connection stayed in use; raise JANUS_POOL_SIZE",
}


class StoreFault(OperationalError):
    """A store failure with its cause named. ``retryable``: a new connection may succeed."""

    def __init__(self, cause: str, detail: str = "") -> None:
        hint = _HINTS.get(cause, "")
        text = f"{cause}: {hint}" if hint else cause
        super().__init__(f"{text} ({detail})" if detail else text)
        self.cause = cause
        self.retryable = cause == LOST


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def cause_of(error: BaseException) -> str | None:
    """The short cause of a store error, or None when it is not a store outage."""
    for link in _chain(error):
        if isinstance(link, StoreFault):
            return link.cause
        for kind, cause in _BY_CLASS:
            if isinstance(link, kind):
                return cause
    for link in _chain(error):
        if isinstance(link, PoolTimeout):
            return None  # says nothing about why: a probe must find out
        if isinstance(link, psycopg.OperationalError):
            text = str(link).lower()
            if any(marker in text for marker in _AUTH) and 'database "' not in text:
                return AUTH_FAILED
            for marker, cause in _MESSAGES:
                if marker in text:
                    return cause
    return None


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def describe(error: BaseException) -> str:
    """One line for an operator: the named cause with its hint when known, else the first line."""
    if isinstance(error, StoreFault):
        return str(error)
    cause = cause_of(error)
    return str(StoreFault(cause, first_line(error))) if cause else first_line(error)


class StoreGuard:
    """Knows whether the store is down; fails fast while it is and re-probes now and then."""

    def __init__(
        self,
        probe: Callable[[], None],
        reprobe_seconds: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._reprobe = reprobe_seconds
        self._now = now
        self._lock = threading.Lock()
        self._down: StoreFault | None = None
        self._next_probe = 0.0

    @property
    def down(self) -> StoreFault | None:
        return self._down

    def check(self) -> None:
        """Before a checkout: raise the known cause at once, unless it is this caller's turn
        to probe (then probe, and raise or carry on)."""
        if self._down is None:
            return
        with self._lock:
            fault = self._down
            if fault is None:
                return
            if self._now() < self._next_probe:
                raise fault
            self._next_probe = self._now() + self._reprobe
        self._run_probe()

    def explain(self, error: BaseException) -> StoreFault | None:
        """The error with its cause named (probing if the pool could not say), or None."""
        cause = cause_of(error)
        if cause is None and any(isinstance(e, PoolTimeout) for e in _chain(error)):
            self._run_probe()  # raises the real cause when the store is down
            return StoreFault(POOL_BUSY, first_line(error))
        if cause is None:
            return None
        fault = error if isinstance(error, StoreFault) else StoreFault(cause, first_line(error))
        if cause in DOWN:
            self._trip(fault)
        return fault

    def healthy(self) -> None:
        if self._down is not None:
            with self._lock:
                self._down = None

    def _run_probe(self) -> None:
        try:
            self._probe()
        except psycopg.Error as error:
            fault = StoreFault(cause_of(error) or UNREACHABLE, first_line(error))
            self._trip(fault)
            raise fault from error
        self.healthy()

    def _trip(self, fault: StoreFault) -> None:
        with self._lock:
            if self._down is None:
                self._next_probe = self._now() + self._reprobe
            self._down = fault
