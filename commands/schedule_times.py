"""Scheduled times: how triggers produce them, the misfire split, and one job's ordered lane.

Pure helpers the scheduler, the views and the API share, plus the two small classes the scheduler
uses to record one job's times strictly in order (see commands/scheduler.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from domain.job import MisfirePolicy, OverlapPolicy
from projections.queries import JobRow

log = logging.getLogger("commands.scheduler")

TICK = timedelta(milliseconds=1)


def fire_time(value: datetime) -> datetime:
    """Fire keys must not depend on float rounding inside the trigger: keep milliseconds, UTC."""
    return datetime.fromtimestamp(round(value.timestamp(), 3), UTC)


def build_trigger(job: JobRow) -> Any:
    spec = job.trigger
    if spec["kind"] == "cron":
        return CronTrigger.from_crontab(spec["expression"], timezone=spec.get("timezone", "UTC"))
    if spec["kind"] == "interval":
        seconds = float(spec["seconds"])
        start = spec.get("start_at")
        start_at = datetime.fromisoformat(start) if start else job.scheduled_at
        return IntervalTrigger(
            seconds=seconds, start_date=start_at + timedelta(seconds=seconds), timezone=UTC
        )
    return DateTrigger(run_date=datetime.fromisoformat(spec["run_at"]), timezone=UTC)


def due_fire_times(job: JobRow, now: datetime, limit: int) -> list[datetime]:
    """Scheduled times after the last recorded one and not after ``now``, oldest first."""
    trigger = build_trigger(job)
    previous = job.last_scheduled_for
    if previous is None:
        # Strictly after scheduling: a job created at 12:00:00 does not owe a 12:00 fire.
        candidate = trigger.get_next_fire_time(None, job.scheduled_at + TICK)
    else:
        candidate = trigger.get_next_fire_time(previous, now)
    due: list[datetime] = []
    while candidate is not None and candidate <= now and len(due) < limit:
        if previous is None or fire_time(candidate) > fire_time(previous):
            due.append(fire_time(candidate))
        previous = candidate
        candidate = trigger.get_next_fire_time(previous, now)
    return due


def split_by_policy(job: JobRow, due: list[datetime]) -> tuple[list[datetime], list[datetime]]:
    """(to run now, to record as missed) for fires that came due while nobody was watching."""
    policy = MisfirePolicy(job.misfire_policy)
    if not due or policy is MisfirePolicy.SKIP:
        return [], due
    if policy is MisfirePolicy.RUN_ONCE:
        return due[-1:], due[:-1]
    keep = job.max_catch_up
    return (due[-keep:] if keep else []), (due[:-keep] if keep else due)


class FireExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler hands its executor the scheduled run times; the default one drops them."""

    def __init__(self, on_fire: Any, on_done: Any) -> None:
        super().__init__(max_workers=4)
        self._on_fire = on_fire
        self._on_done = on_done

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def run() -> None:
            try:
                self._on_fire(job.id, run_times)
            except Exception:
                # Never silent: the lane keeps the time and the next drain or start records it.
                log.exception("job %s: fire of %s failed", job.id, run_times)
            finally:
                self._run_job_success(job.id, [])
                self._on_done(job.id)

        self._pool.submit(run)


class Stopping(Exception):
    """The scheduler is stopping: leave the remaining times to the next start."""


@dataclass
class Lane:
    """One job's scheduled times, recorded strictly in order."""

    job: JobRow
    overlap: OverlapPolicy
    lock: threading.Lock = field(default_factory=threading.Lock)
    # time -> "due" (came now), "owed" (the misfire policy runs it late) or "missed"
    pending: dict[datetime, str] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)
    last: datetime | None = None
    inflight: datetime | None = None  # the time being recorded now (its save may be retrying)
    running: UUID | None = None  # the fire whose action has not settled
    queued: list[UUID] = field(default_factory=list)

    def add(self, times: list[datetime], kind: str) -> None:
        with self.guard:
            for at in times:
                self.pending.setdefault(at, kind)

    def take(self) -> list[tuple[datetime, str]]:
        with self.guard:
            taken = sorted(self.pending.items())
            self.pending.clear()
        return [(at, kind) for at, kind in taken if self.last is None or at > self.last]

    def put_back(self, items: list[tuple[datetime, str]]) -> None:
        with self.guard:
            for at, kind in items:
                self.pending.setdefault(at, kind)
