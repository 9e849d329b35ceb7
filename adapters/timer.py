"""Trigger maths of the timer engine (APScheduler): specs in, scheduled times out.

A trigger spec is the ``trigger`` dict a ``Job`` records (``kind`` cron/interval/date and its
fields). The scheduler (commands/) and the jobs view (projections/) both compute times here, so a
view's "next fire" is the time the scheduler will fire, and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

TICK = timedelta(milliseconds=1)


def fire_time(value: datetime) -> datetime:
    """Fire keys must not depend on float rounding inside the trigger: keep milliseconds, UTC."""
    return datetime.fromtimestamp(round(value.timestamp(), 3), UTC)


def build_trigger(spec: Mapping[str, Any], scheduled_at: datetime) -> Any:
    """The APScheduler trigger for a spec; an interval without ``start_at`` counts from then."""
    if spec["kind"] == "cron":
        return CronTrigger.from_crontab(spec["expression"], timezone=spec.get("timezone", "UTC"))
    if spec["kind"] == "interval":
        seconds = float(spec["seconds"])
        start = spec.get("start_at")
        start_at = datetime.fromisoformat(start) if start else scheduled_at
        return IntervalTrigger(
            seconds=seconds, start_date=start_at + timedelta(seconds=seconds), timezone=UTC
        )
    return DateTrigger(run_date=datetime.fromisoformat(spec["run_at"]), timezone=UTC)


def next_fire_after(trigger: Any, after: datetime) -> datetime | None:
    """The first scheduled time strictly after ``after`` (as a fire key), or None when done."""
    candidate = trigger.get_next_fire_time(None, after + TICK)
    if candidate is None or candidate <= after:
        return None
    return fire_time(candidate)


def due_fire_times(
    spec: Mapping[str, Any],
    scheduled_at: datetime,
    last_scheduled_for: datetime | None,
    now: datetime,
    limit: int,
) -> list[datetime]:
    """Scheduled times after the last recorded one and not after ``now``, oldest first."""
    trigger = build_trigger(spec, scheduled_at)
    previous = last_scheduled_for
    if previous is None:
        # Strictly after scheduling: a job created at 12:00:00 does not owe a 12:00 fire.
        candidate = trigger.get_next_fire_time(None, scheduled_at + TICK)
    else:
        candidate = trigger.get_next_fire_time(previous, now)
    due: list[datetime] = []
    while candidate is not None and candidate <= now and len(due) < limit:
        if previous is None or fire_time(candidate) > fire_time(previous):
            due.append(fire_time(candidate))
        previous = candidate
        candidate = trigger.get_next_fire_time(previous, now)
    return due
