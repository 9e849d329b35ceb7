"""The scheduler on both stores: recorded fires, misfire policies, and no fire run twice."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import update

from adapters.clock import ManualClock, SystemClock
from adapters.effects import Ledger
from adapters.timer import fire_time
from bootstrap.container import Janus
from commands import models as m
from commands.errors import ConcurrencyConflict, NotFound
from commands.scheduler import Scheduler
from domain.errors import InvalidTransition
from domain.job import JobFire
from domain.meta import Actor, ActorKind, CommandContext
from projections.relational.tables import jobs
from tests.servers import wait_until
from tests.support.commands import as_alice
from tests.support.scheduler import (
    executor_running,
)


def schedule(janus: Janus, policy: str, seconds: float = 10, catch_up: int = 2) -> UUID:
    return janus.commands.schedule_job(
        m.ScheduleJob(
            name="heartbeat",
            trigger={"kind": "interval", "seconds": seconds},
            action={"name": "notify", "parameters": {"to": "ops"}},
            misfire_policy=policy,
            max_catch_up=catch_up,
        ),
        as_alice(),
    ).aggregate_id


def notifier(janus: Janus) -> Ledger:
    return Ledger(janus.settings.home / "world" / "notifier.sqlite")


def statuses(janus: Janus, job_id: UUID) -> list[str]:
    janus.relational.catch_up()
    return [row["status"] for row in janus.views.fires(job_id)]


def run_effects(janus: Janus, scheduler: Scheduler) -> None:
    """The executor runs what the gate granted; the scheduler records how each fire went."""
    executor = janus.executor()
    for _ in range(10):  # each round settles one fire of a queue
        while executor.run_once():
            pass
        janus.relational.catch_up()
        scheduler.settle()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("skip", ["missed"] * 5),
        ("run_once", ["missed"] * 4 + ["succeeded"]),
        ("catch_up", ["missed"] * 3 + ["succeeded"] * 2),
    ],
)
def test_fires_due_while_down_follow_the_misfire_policy(
    janus: Janus, policy: str, expected: list[str]
) -> None:
    job_id = schedule(janus, policy)
    janus.relational.catch_up()
    clock = ManualClock(janus.views.active_jobs()[0].scheduled_at)
    clock.advance(timedelta(seconds=55))  # fires at +10 .. +50 came due while nobody watched
    scheduler = Scheduler(janus.app, janus.views, janus.effects, "test", clock)
    scheduler.sync()
    run_effects(janus, scheduler)
    assert statuses(janus, job_id) == expected
    assert len(notifier(janus).executions()) == expected.count("succeeded")

    # A restart computes the same fires again and records nothing new.
    head = janus.app.head()
    Scheduler(janus.app, janus.views, janus.effects, "test", clock).sync()
    assert janus.app.head() == head


def test_two_schedulers_running_at_once_run_each_fire_once(janus: Janus) -> None:
    job_id = schedule(janus, "skip", seconds=0.5)
    janus.relational.catch_up()
    schedulers = [
        Scheduler(janus.app, janus.views, janus.effects, f"node{i}", SystemClock())
        for i in range(2)
    ]
    for scheduler in schedulers:
        scheduler.start()
    try:
        with executor_running(janus):
            wait_until(lambda: statuses(janus, job_id).count("succeeded") >= 4, timeout=20)
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    per_key = Counter(e.key for e in notifier(janus).executions())
    assert per_key and set(per_key.values()) == {1}
    fires = janus.views.fires(job_id)
    assert len({row["scheduled_for"] for row in fires}) == len(fires)


def _open_fire(janus: Janus, job_id: UUID) -> JobFire:
    """What the store holds when the scheduler died after recording a fire, before its outcome."""
    janus.relational.catch_up()
    ctx = CommandContext("crash", str(job_id), "crash", Actor(ActorKind.SCHEDULER, "x"), "test")
    scheduled_at = janus.views.active_jobs()[0].scheduled_at
    fire = JobFire.fire(job_id, scheduled_at + timedelta(seconds=10), False, ctx)
    janus.app.save(fire)
    janus.relational.catch_up()
    return fire


def test_an_open_fire_whose_action_cannot_say_is_reported_unknown(janus: Janus) -> None:
    job_id = schedule(janus, "skip", seconds=3600)
    fire = _open_fire(janus, job_id)
    Scheduler(janus.app, janus.views, janus.effects, "test", SystemClock()).recover()
    recovered: JobFire = janus.app.repository.get(fire.id)
    assert recovered.status.value == "outcome_unknown"
    assert notifier(janus).executions() == []


def test_times_inside_a_pause_are_neither_run_nor_missed(janus: Janus) -> None:
    job_id = schedule(janus, "run_once")
    janus.commands.pause_job(m.PauseJob(job_id=job_id), as_alice())
    janus.commands.resume_job(m.ResumeJob(job_id=job_id), as_alice())
    janus.relational.catch_up()
    resumed_at = janus.app.repository.get(job_id).resumed_at
    # As if the job had been scheduled a minute before the pause: six fires fell inside it.
    with janus.views_engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == str(job_id))
            .values(scheduled_at=resumed_at - timedelta(seconds=65))
        )
    clock = ManualClock(resumed_at + timedelta(seconds=4))
    Scheduler(janus.app, janus.views, janus.effects, "test", clock).sync()
    assert statuses(janus, job_id) == []


def test_run_now_is_the_schedulers_public_command_and_names_the_caller(janus: Janus) -> None:
    """API and CLI fire a job through ``Scheduler.run_now``, never its private fire path."""
    clock = ManualClock(SystemClock().now())
    scheduler = Scheduler(janus.app, janus.views, janus.effects, "node-a", clock)
    job_id = schedule(janus, "skip", seconds=3600)
    janus.commands.pause_job(m.PauseJob(job_id=job_id), as_alice())
    janus.relational.catch_up()

    fire = scheduler.run_now(job_id, as_alice("run-1"))  # a paused job can still be run by hand

    assert (fire.job_id, fire.manual) == (job_id, True)
    assert fire.scheduled_for == fire_time(clock.now())
    (first, *_) = janus.app.repository.event_store.get(fire.id)
    assert (first.meta.actor, first.meta.command_id) == (as_alice().actor, "run-1")
    with pytest.raises(ConcurrencyConflict):  # the same instant is the same fire
        scheduler.run_now(job_id, as_alice())
    with pytest.raises(NotFound):
        scheduler.run_now(uuid4(), as_alice())
    janus.commands.remove_job(m.RemoveJob(job_id=job_id), as_alice())
    janus.relational.catch_up()
    clock.advance(timedelta(seconds=1))
    with pytest.raises(InvalidTransition):
        scheduler.run_now(job_id, as_alice())
