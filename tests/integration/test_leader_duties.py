"""Leader duties that fail step down and come back (issue 10, break 3), on real Postgres.

Two all-in-one processes (each with its own store connections and leader locks) share one
database. Each trigger from the issue hits them mid-work: a terminated lock session, a database
that turns read-only for a while, a Postgres outage (a throwaway server stopped and started
again). Afterwards the role comes back on one of them (the duty that
failed released its lock instead of keeping it while it retried), the role board says so, and
every grant, before and after, unlocks the door exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from adapters.effects import Ledger
from adapters.role_status import read_roles
from bootstrap.container import Janus
from bootstrap.process import JanusProcess
from bootstrap.relay import build_relay
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from event_store.relay.thread import RelayThread
from tests.servers import EmbeddedPostgres, create_database, database_url, wait_until
from tests.support.commands import pending_confirmation
from tests.support.relay import (
    TEST_OPTIONS,
    JanusFactory,
    assert_stream_is_the_log,
    running_relay,
    submit_goals,
    wait_caught_up,
)

DANA = Invocation(Actor(ActorKind.USER, "dana", role="approver"))
ADMIN_OPTIONS = "-c default_transaction_read_only=off"


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "janus",
        database_url=pg_url,
        poll_interval_seconds=0.05,
        leader_grace_seconds=2,
        pool_size=3,  # three Janus on a test server whose connections are shared
    )


@pytest.fixture
def janus(settings: Settings) -> Iterator[Janus]:
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()


@contextmanager
def two_runtimes(settings: Settings) -> Iterator[list[JanusProcess]]:
    """Two all-in-one processes on the store; the first leads, the second stands by."""
    started: list[JanusProcess] = []
    try:
        for _ in range(2):
            process = JanusProcess(Janus.build(settings), heartbeat_seconds=0.5)
            process.start()
            started.append(process)
            wait_until(lambda: leading(started, "executor") is not None, timeout=30)
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def runtimes(settings: Settings) -> Iterator[list[JanusProcess]]:
    with two_runtimes(settings) as started:
        yield started


def leading(processes: list[JanusProcess], role: str) -> JanusProcess | None:
    found = [p for p in processes if p.roles.get(role) and p.roles[role].state == "running"]
    assert len(found) <= 1, f"two processes run {role} at once"
    return found[0] if found else None


def admin(url: str, statement: str) -> int:
    with psycopg.connect(url, autocommit=True, options=ADMIN_OPTIONS) as conn:
        cursor = conn.execute(statement)
        return len(cursor.fetchall()) if cursor.description else 0


def terminate_sessions(url: str, only_lock_holders: bool) -> int:
    holders = "l.locktype = 'advisory' AND l.granted" if only_lock_holders else "TRUE"
    return admin(
        url,
        "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a"
        " LEFT JOIN pg_locks l ON l.pid = a.pid"
        f" WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND {holders}",
    )


def grant_many(janus: Janus, count: int) -> list[UUID]:
    with ThreadPoolExecutor(3) as pool:
        confirmations = list(pool.map(lambda _: pending_confirmation(janus, ttl=600), range(count)))
        cmd = m.GrantConfirmation
        list(
            pool.map(
                lambda c: janus.commands.grant_confirmation(cmd(confirmation_id=c), DANA),
                confirmations,
            )
        )
    return confirmations


def unlocked_once(ledger: Ledger, confirmations: list[UUID]) -> bool:
    per_key = Counter(e.key for e in ledger.executions())
    twice = {key: n for key, n in per_key.items() if n > 1}
    assert not twice, f"unlocked more than once: {twice}"
    return all(per_key[str(c)] == 1 for c in confirmations)


def roles_running(janus: Janus) -> bool:
    summaries = {r.role: r for r in read_roles(janus.views_engine)}
    return all(summaries[role].ok for role in ("executor", "scheduler", "expiry", "projections"))


def wait_for_roles(janus: Janus, timeout: float) -> None:
    try:
        wait_until(lambda: roles_running(janus), timeout=timeout, message="every role back")
    except TimeoutError:
        roles = [r.as_dict() for r in read_roles(janus.views_engine)]
        raise AssertionError(f"roles not all running: {roles}") from None


def door(settings: Settings) -> Ledger:
    return Ledger(settings.home / "world" / "door_lock.sqlite")


def test_a_duty_whose_lock_session_is_terminated_comes_back_and_grants_run_once(
    janus: Janus, settings: Settings, runtimes: list[JanusProcess], pg_url: str
) -> None:
    ledger = door(settings)
    first = grant_many(janus, 100)
    wait_until(lambda: len(ledger.executions()) >= 10, timeout=30)
    before = {p.roles["executor"].detail for p in runtimes}
    assert terminate_sessions(pg_url, only_lock_holders=True) >= 2  # executor and scheduler

    wait_until(lambda: unlocked_once(ledger, first), timeout=60)
    later = grant_many(janus, 5)
    wait_until(lambda: unlocked_once(ledger, first + later), timeout=30)
    wait_until(lambda: leading(runtimes, "scheduler") is not None, timeout=30)
    leader = leading(runtimes, "executor")
    assert leader is not None and leader.roles["executor"].detail not in before, "a new term"
    wait_for_roles(janus, timeout=10)


def test_a_database_read_only_for_a_while_stops_the_duties_and_they_come_back(
    janus: Janus, settings: Settings, runtimes: list[JanusProcess], pg_url: str
) -> None:
    ledger = door(settings)
    dbname = pg_url.rsplit("/", 1)[1]
    first = grant_many(janus, 100)
    wait_until(lambda: len(ledger.executions()) >= 10, timeout=30)
    try:
        admin(pg_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
        terminate_sessions(pg_url, only_lock_holders=False)

        def executor_failing() -> bool:
            states = {p.roles["executor"].state for p in runtimes}
            return "running" not in states and "failing" in states

        wait_until(executor_failing, timeout=30, message="the executor reports its failure")
        wait_until(lambda: not roles_running(janus), timeout=10, message="the board says so")
    finally:
        admin(pg_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = off')

    wait_until(lambda: unlocked_once(ledger, first), timeout=60)
    later = grant_many(janus, 5)
    wait_until(lambda: unlocked_once(ledger, first + later), timeout=30)
    wait_for_roles(janus, timeout=30)


def start_again(server: EmbeddedPostgres) -> None:
    """``pg_ctl start`` on the existing cluster (EmbeddedPostgres.start would initdb anew)."""
    options = f"-h {server.host} -p {server.port} -k {server.base_dir} -c fsync=off"
    pgdata, log = str(server.pgdata), str(server.server_log)
    server._run("pg_ctl", "-D", pgdata, "-l", log, "-o", options, "-w", "-t", "60", "start")


def test_a_postgres_outage_stops_the_duties_and_they_come_back(tmp_path: Path) -> None:
    with EmbeddedPostgres() as server:
        url = database_url(server.url, create_database(server.url))
        settings = Settings(
            home=tmp_path / "janus", database_url=url, poll_interval_seconds=0.05, pool_size=3
        )
        ledger = door(settings)
        janus = Janus.build(settings)
        try:
            with two_runtimes(settings) as runtimes:
                first = grant_many(janus, 20)
                wait_until(lambda: unlocked_once(ledger, first), timeout=60)
                server._run("pg_ctl", "-D", str(server.pgdata), "-m", "immediate", "-w", "stop")

                def executors_failing() -> bool:
                    return {p.roles["executor"].state for p in runtimes} == {"failing"}

                wait_until(executors_failing, timeout=60, message="both executors failing")
                start_again(server)

                later = grant_many(janus, 5)
                wait_until(lambda: unlocked_once(ledger, first + later), timeout=60)
                wait_until(lambda: leading(runtimes, "scheduler") is not None, timeout=30)
                wait_for_roles(janus, timeout=30)
        finally:
            janus.close()


def test_the_relay_rides_out_a_read_only_database_and_its_lock_stays_takeable(
    pg_url: str,
    pg_janus: Janus,
    janus_on: JanusFactory,
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    submit_goals(pg_janus, 30, "before")
    with running_relay(pg_janus) as active:
        wait_caught_up(pg_janus)
        try:
            admin(pg_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
            terminate_sessions(pg_url, only_lock_holders=False)
            # Idle, it notices the lost lock at its next publish; its status writes fail now.
            wait_until(lambda: active.relay.last_error is not None, 30, message="it says why")
        finally:
            admin(pg_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = off')
        submit_goals(pg_janus, 30, "after")
        wait_caught_up(pg_janus)
        standby = RelayThread(build_relay(janus_on(pg_janus.settings), **TEST_OPTIONS)).start()
    try:
        standby.wait_ready()  # the first relay stopped: its lock was free to take
        submit_goals(pg_janus, 10, "after takeover")
        wait_caught_up(pg_janus)
    finally:
        standby.stop()
    assert len(assert_stream_is_the_log(pg_janus)) == 70
