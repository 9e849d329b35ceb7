"""Naming store failures, and the breaker that fails fast while the store is down (pure)."""

from __future__ import annotations

import psycopg
import psycopg.errors as pg
import pytest
from psycopg_pool import PoolTimeout

from event_store.faults import (
    AUTH_FAILED,
    LOCK_TIMEOUT,
    LOST,
    NO_DATABASE,
    POOL_BUSY,
    READ_ONLY,
    REFUSED,
    StoreFault,
    StoreGuard,
    cause_of,
)

FAILED = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (psycopg.OperationalError(FAILED + "Connection refused"), REFUSED),
        (psycopg.OperationalError(FAILED + 'FATAL:  database "x" does not exist'), NO_DATABASE),
        (psycopg.OperationalError(FAILED + 'FATAL:  role "x" does not exist'), AUTH_FAILED),
        (psycopg.OperationalError(FAILED + "FATAL:  password authentication failed"), AUTH_FAILED),
        (pg.LockNotAvailable("canceling statement due to lock timeout"), LOCK_TIMEOUT),
        (pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), READ_ONLY),
        (pg.AdminShutdown("terminating connection due to administrator command"), LOST),
        (ValueError("not a store error"), None),
        (PoolTimeout("couldn't get a connection after 3.00 sec"), None),
    ],
)
def test_each_failure_is_named_by_its_cause(error: Exception, cause: str | None) -> None:
    assert cause_of(error) == cause


def test_a_cause_is_found_behind_the_wrappers_that_carry_it() -> None:
    try:
        try:
            raise pg.LockNotAvailable("canceling statement due to lock timeout")
        except pg.LockNotAvailable:
            raise RuntimeError("event store unavailable") from None  # context kept
    except RuntimeError as wrapped:
        assert cause_of(wrapped) == LOCK_TIMEOUT


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = psycopg.OperationalError(FAILED + "Connection refused")

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def test_once_down_the_guard_fails_fast_and_reprobes_once_per_interval() -> None:
    clock, probe = Clock(), Probe()
    guard = StoreGuard(probe, reprobe_seconds=1.0, now=clock)
    guard.check()  # nothing known: no probe
    fault = guard.explain(psycopg.OperationalError(FAILED + "Connection refused"))
    assert fault is not None and fault.cause == REFUSED
    for _ in range(3):
        with pytest.raises(StoreFault, match="connection refused"):
            guard.check()
    assert probe.calls == 0
    clock.now = 1.5
    with pytest.raises(StoreFault, match="connection refused"):
        guard.check()
    assert probe.calls == 1
    probe.error = None
    clock.now = 3.0
    guard.check()  # the probe succeeds: open again
    assert guard.down is None
    guard.check()
    assert probe.calls == 2


def test_a_pool_timeout_is_explained_by_a_probe() -> None:
    clock, probe = Clock(), Probe()
    guard = StoreGuard(probe, now=clock)
    with pytest.raises(StoreFault, match="connection refused"):
        guard.explain(PoolTimeout("couldn't get a connection after 3.00 sec"))
    assert guard.down is not None
    probe.error = None
    busy = StoreGuard(probe, now=clock).explain(PoolTimeout("couldn't get a connection"))
    assert busy is not None and busy.cause == POOL_BUSY


def test_lock_timeouts_and_read_only_do_not_open_the_breaker() -> None:
    guard = StoreGuard(Probe(), now=Clock())
    for error in (pg.LockNotAvailable("lock timeout"), pg.ReadOnlySqlTransaction("read-only")):
        fault = guard.explain(error)
        assert fault is not None and not fault.retryable
    assert guard.down is None
