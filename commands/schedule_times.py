"""Scheduled times: how triggers produce them, the misfire split, and one job's ordered lane.

The trigger maths itself lives with the timer engine (adapters/timer.py); these wrappers take a
jobs-view row. Plus the two small classes the scheduler uses to record one job's times
strictly in order (see commands/scheduler.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from apscheduler.executors.pool import ThreadPoolExecutor

from adapters import timer
from domain.job import MisfirePolicy, OverlapPolicy
from projections.queries import JobRow

log = logging.getLogger("commands.scheduler")


def build_trigger(job: JobRow) -> Any:
    return timer.build_trigger(job.trigger, job.scheduled_at)


def due_fire_times(job: JobRow, now: datetime, limit: int) -> list[datetime]:
    """Scheduled times after the last recorded one and not after ``now``, oldest first."""
    return timer.due_fire_times(job.trigger, job.scheduled_at, job.last_scheduled_for, now, limit)


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
