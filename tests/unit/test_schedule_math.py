"""Which fires came due while the scheduler was down, and what each misfire policy does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from adapters.timer import fire_time
from commands.scheduler import due_fire_times, split_by_policy
from projections.queries import JobRow

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def a_job(policy: str, last: datetime | None = None, max_catch_up: int = 2) -> JobRow:
    return JobRow(
        id=uuid4(),
        name="heartbeat",
        trigger={"kind": "interval", "seconds": 10},
        action={"name": "notify"},
        misfire_policy=policy,
        max_catch_up=max_catch_up,
        max_attempts=1,
        status="active",
        scheduled_at=T0,
        last_scheduled_for=last,
    )


def test_nothing_due_before_the_first_fire() -> None:
    assert due_fire_times(a_job("skip"), T0 + timedelta(seconds=9), 100) == []


def test_due_fires_start_after_the_last_recorded_one() -> None:
    job = a_job("skip", last=T0 + timedelta(seconds=20))
    due = due_fire_times(job, T0 + timedelta(seconds=55), 100)
    assert due == [
        T0 + timedelta(seconds=30),
        T0 + timedelta(seconds=40),
        T0 + timedelta(seconds=50),
    ]


def test_due_fires_are_capped() -> None:
    assert len(due_fire_times(a_job("skip"), T0 + timedelta(hours=1), 7)) == 7


def test_cron_due_fires() -> None:
    job = a_job("skip")
    job = JobRow(**{**job.__dict__, "trigger": {"kind": "cron", "expression": "*/15 * * * *"}})
    due = due_fire_times(job, T0 + timedelta(minutes=46), 100)
    assert due == [T0 + timedelta(minutes=m) for m in (15, 30, 45)]


def test_policies_split_due_fires() -> None:
    due = [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    assert split_by_policy(a_job("skip"), due) == ([], due)
    assert split_by_policy(a_job("run_once"), due) == (due[2:], due[:2])
    assert split_by_policy(a_job("catch_up", max_catch_up=2), due) == (due[1:], due[:1])
    assert split_by_policy(a_job("catch_up", max_catch_up=0), due) == ([], due)


def test_fire_times_are_stable_to_the_millisecond() -> None:
    jittered = T0 + timedelta(microseconds=999_700)
    assert fire_time(jittered) == T0 + timedelta(seconds=1)
    assert fire_time(jittered).tzinfo is UTC
