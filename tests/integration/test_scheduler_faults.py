"""Every scheduled time ends recorded once, as fired, missed or skipped-overlap, whatever fails.

Real Postgres turned read-only under the running scheduler (ALTER DATABASE ... SET
default_transaction_read_only, every session terminated), and an action slower than its
interval. The check is the same each time: between the first and the last recorded time of the
job, every time its trigger produces is recorded, and each exactly once.
"""

from __future__ import annotations

import logging
import shlex
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from psycopg import sql

from adapters.clock import SystemClock
from adapters.effects import EffectRegistry, Ledger
from adapters.timer import fire_time
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.scheduler import build_trigger
from domain.job import JobFire
from event_store.faults import StoreFault
from tests.servers import (
    EmbeddedPostgres,
    _admin_connect,
    create_database,
    database_url,
    wait_until,
)
from tests.support.commands import as_alice
from tests.support.effects import SlowGate
from tests.support.scheduler import executor_running

OPENINGS = (JobFire.Fired, JobFire.Missed, JobFire.SkippedOverlap, JobFire.Queued)


def schedule(janus: Janus, seconds: float, action: str, overlap: str = "skip") -> UUID:
    job_id = janus.commands.schedule_job(
        m.ScheduleJob.model_validate(
            {
                "name": "fast",
                "trigger": {"kind": "interval", "seconds": seconds},
                "action": {"name": action, "parameters": {}},
                "misfire_policy": "skip",
                "overlap": overlap,
            }
        ),
        as_alice(),
    ).aggregate_id
    janus.relational.catch_up()
    return job_id


def recorded(janus: Janus, job_id: UUID) -> list[tuple[datetime, str]]:
    """(scheduled time, how it was recorded) of every non-manual fire, from the log itself."""
    found = []
    for logged in janus.reader.iterate():
        event = logged.event
        if isinstance(event, OPENINGS) and event.job_id == job_id and not event.manual:
            found.append((event.scheduled_for, type(event).__name__))
    return found


def recorded_once_up(janus: Janus, job_id: UUID) -> int:
    """How many times are recorded; -1 while the store still counts as down.

    After an outage the store fails fast with the last fault until its guard probes again (each
    second), so a read right after the server is back may still be refused.
    """
    try:
        return len(recorded(janus, job_id))
    except StoreFault:
        return -1


def assert_each_time_recorded_once(janus: Janus, job_id: UUID) -> list[tuple[datetime, str]]:
    fires = recorded(janus, job_id)
    times = [at for at, _ in fires]
    assert max(Counter(times).values()) == 1, "a scheduled time was recorded twice"
    janus.relational.catch_up()
    (job,) = [j for j in janus.views.active_jobs() if j.id == job_id]
    trigger = build_trigger(job)
    first, last = min(times), max(times)
    expected, at = [], trigger.get_next_fire_time(None, first - timedelta(milliseconds=1))
    while at is not None and fire_time(at) <= last:
        expected.append(fire_time(at))
        at = trigger.get_next_fire_time(at, at)
    assert sorted(times) == expected, "a scheduled time was never recorded"
    return sorted(fires)


# -- a read-only database under the running scheduler -------------------------------------------


@pytest.fixture
def pg_janus(pg_url: str, tmp_path: Path) -> Iterator[Janus]:
    settings = Settings(home=tmp_path / "janus", database_url=pg_url, poll_interval_seconds=0.05)
    built = Janus.build(settings, clock=SystemClock())
    try:
        yield built
    finally:
        built.close()


def read_only(pg_server_url: str, pg_url: str, on: bool) -> None:
    """Turn the database read-only (or back) and end every session, as an operator would."""
    dbname = pg_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    setting = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    with _admin_connect(pg_server_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(dbname)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )


def test_times_that_come_while_the_database_is_read_only_are_recorded_once_it_is_back(
    pg_janus: Janus, pg_server_url: str, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = schedule(pg_janus, 0.2, "notify")
    scheduler = pg_janus.scheduler()
    scheduler.start()
    try:
        wait_until(lambda: len(recorded(pg_janus, job_id)) >= 2, timeout=20)
        with caplog.at_level(logging.WARNING, logger="commands.scheduler"):
            read_only(pg_server_url, pg_url, on=True)
            wait_until(lambda: scheduler.unrecorded >= 3, timeout=20)
            before = len(recorded(pg_janus, job_id))
            read_only(pg_server_url, pg_url, on=False)
            wait_until(lambda: len(recorded(pg_janus, job_id)) >= before + 5, timeout=30)
    finally:
        scheduler.stop()
    assert any("save failed" in r.getMessage() for r in caplog.records)
    fires = assert_each_time_recorded_once(pg_janus, job_id)
    assert len(fires) >= before + 5


def test_times_left_unrecorded_when_the_scheduler_stops_are_recorded_by_the_next_start(
    pg_janus: Janus, pg_server_url: str, pg_url: str
) -> None:
    job_id = schedule(pg_janus, 0.2, "notify")
    scheduler = pg_janus.scheduler()
    scheduler.start()
    try:
        wait_until(lambda: len(recorded(pg_janus, job_id)) >= 2, timeout=20)
        read_only(pg_server_url, pg_url, on=True)
        wait_until(lambda: scheduler.unrecorded >= 3, timeout=20)
    finally:
        scheduler.stop()  # gives up on the times it could not record
    before = len(recorded(pg_janus, job_id))
    read_only(pg_server_url, pg_url, on=False)
    pg_janus.relational.catch_up()
    restarted = pg_janus.scheduler()
    restarted.start()  # resumes from the last recorded time, not past it
    try:
        wait_until(lambda: len(recorded(pg_janus, job_id)) >= before + 5, timeout=30)
    finally:
        restarted.stop()
    fires = assert_each_time_recorded_once(pg_janus, job_id)
    assert "Missed" in {kind for _, kind in fires}


def restart(server: EmbeddedPostgres) -> None:
    """Start the stopped cluster again on its port and data directory."""
    options = f"-h {server.host} -p {server.port} -k {shlex.quote(str(server.base_dir))}"
    pg_ctl = ["-D", str(server.pgdata), "-l", str(server.server_log), "-o", options]
    server._run("pg_ctl", *pg_ctl, "-w", "-t", "60", "start")
    server._started = True


def test_times_that_come_while_postgres_is_down_are_recorded_once_it_is_back(
    tmp_path: Path,
) -> None:
    with EmbeddedPostgres() as server:
        url = database_url(server.url, create_database(server.url))
        settings = Settings(home=tmp_path / "janus", database_url=url, poll_interval_seconds=0.05)
        janus = Janus.build(settings, clock=SystemClock())
        try:
            job_id = schedule(janus, 0.2, "notify")
            scheduler = janus.scheduler()
            scheduler.start()
            try:
                wait_until(lambda: len(recorded(janus, job_id)) >= 2, timeout=20)
                before = len(recorded(janus, job_id))
                server.stop()  # the database is gone: every save fails
                wait_until(lambda: scheduler.unrecorded >= 3, timeout=30)
                restart(server)
                wait_until(lambda: recorded_once_up(janus, job_id) >= before + 8, timeout=90)
            finally:
                scheduler.stop()
            assert_each_time_recorded_once(janus, job_id)
        finally:
            janus.close()


# -- an action slower than its interval ----------------------------------------------------------


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_a_job_slower_than_its_interval_records_every_time_once(
    settings: Settings, overlap: str
) -> None:
    gate = SlowGate(Ledger(settings.home / "world" / "gate.sqlite"))
    janus = Janus.build(settings, clock=SystemClock(), effects=EffectRegistry([gate]))
    try:
        job_id = schedule(janus, 0.2, "open_gate", overlap)
        scheduler = janus.scheduler()
        scheduler.start()
        try:
            with executor_running(janus):
                overlapping = "SkippedOverlap" if overlap == "skip" else "Queued"
                wait_until(
                    lambda: [k for _, k in recorded(janus, job_id)].count(overlapping) >= 3,
                    timeout=20,
                )
                gate.release.set()
                wait_until(lambda: len(gate.ledger.executions()) >= 3, timeout=30)
        finally:
            scheduler.stop()
        fires = assert_each_time_recorded_once(janus, job_id)
        kinds = Counter(kind for _, kind in fires)
        assert kinds[overlapping] >= 3
        executions = Counter(e.key for e in gate.ledger.executions())
        assert set(executions.values()) == {1}, "an action ran twice"
        assert len(executions) <= kinds["Fired"] + kinds["Queued"]
    finally:
        janus.close()
