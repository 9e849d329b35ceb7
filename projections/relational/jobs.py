"""Jobs, their fires, and each job's next fire time, computed as the scheduler computes it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from adapters.timer import build_trigger, next_fire_after
from domain.job import FireStatus, Job, JobFire
from event_store.reader import LoggedEvent
from projections.relational.batch import Batch, Rows
from projections.relational.tables import RelationalTables

log = logging.getLogger(__name__)


def _fire_opening(event: Any) -> tuple[FireStatus, str, str | None]:
    """(status, the job's counter, error) of a fire's first event."""
    match event:
        case JobFire.Missed():
            return FireStatus.MISSED, "missed_count", event.reason
        case JobFire.SkippedOverlap():
            running = event.running_fire_id
            return (
                FireStatus.SKIPPED_OVERLAP,
                "missed_count",
                f"the previous fire {running} was still running",
            )
        case JobFire.Queued():
            return FireStatus.QUEUED, "fired_count", None
    return FireStatus.FIRED, "fired_count", None


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class JobRows(Rows):
    """Jobs and fires together: a fire changes its job's counters and next fire time."""

    def __init__(self, tables: RelationalTables, batch: Batch) -> None:
        super().__init__(tables, batch)
        self._triggers: dict[str, Any] = {}

    def job(self, logged: LoggedEvent, jid: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case Job.Scheduled():
                row: dict[str, Any] = {
                    "id": jid,
                    "name": event.name,
                    "trigger": event.trigger,
                    "action": event.action,
                    "misfire_policy": event.misfire_policy,
                    "overlap": event.overlap,
                    "max_catch_up": event.max_catch_up,
                    "max_attempts": event.max_attempts,
                    "status": "active",
                    "scheduled_at": event.timestamp,
                    "last_scheduled_for": None,
                    "last_outcome": None,
                    "fired_count": 0,
                    "succeeded_count": 0,
                    "failed_count": 0,
                    "missed_count": 0,
                    "updated_at": event.timestamp,
                    "next_fire_at": None,
                }
                row["next_fire_at"] = self._next_fire(row, event.timestamp)
                self._batch.insert(self.t.jobs, row)
                return
            case Job.Paused():
                changes: dict[str, Any] = {"status": "paused", "next_fire_at": None}
            case Job.Resumed():
                changes = {"status": "active"}
            case Job.Removed():
                changes = {"status": "removed", "next_fire_at": None}
            case _:
                return
        job = self._batch.update(conn, self.t.jobs, jid, updated_at=event.timestamp, **changes)
        if job is not None and isinstance(event, Job.Resumed):
            # Times that fell inside the pause are neither run nor missed (the scheduler's rule).
            last = job["last_scheduled_for"]
            after = max(event.timestamp, _aware(last)) if last else event.timestamp
            job["next_fire_at"] = self._next_fire(job, after)

    def _next_fire(self, job: dict[str, Any], after: datetime) -> datetime | None:
        """The first scheduled time after ``after``, computed as the scheduler computes it."""
        trigger = self._trigger(job)
        return None if trigger is None else next_fire_after(trigger, after)

    def _trigger(self, job: dict[str, Any]) -> Any:
        """Triggers are immutable facts of a job, so one per job is built once and kept."""
        if job["id"] not in self._triggers:
            try:
                self._triggers[job["id"]] = build_trigger(
                    job["trigger"], _aware(job["scheduled_at"])
                )
            except (ValueError, LookupError) as error:
                # The timer engine rejects this trigger too and says so; the view keeps the job.
                log.warning("job %s: no next fire time: %s", job["id"], error)
                self._triggers[job["id"]] = None
        return self._triggers[job["id"]]

    def fire(self, logged: LoggedEvent, fid: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case JobFire.Fired() | JobFire.Missed() | JobFire.Queued() | JobFire.SkippedOverlap():
                self._new_fire(event, fid, conn)
                return
            case JobFire.ActionRequested():
                changes: dict[str, Any] = {
                    "status": FireStatus.WAITING.value,
                    "confirmation_id": str(event.confirmation_id),
                }
                counter = ""
            case JobFire.Succeeded():
                changes = {"status": FireStatus.SUCCEEDED.value, "error": None}
                counter = "succeeded_count"
            case JobFire.Failed():
                retrying = event.next_retry_at is not None
                status = FireStatus.RETRY_SCHEDULED if retrying else FireStatus.FAILED
                changes = {
                    "status": status.value,
                    "error": event.error,
                    "next_retry_at": event.next_retry_at,
                }
                counter = "failed_count"
            case JobFire.Retried():
                changes = {"status": FireStatus.FIRED.value, "attempt": event.attempt}
                counter = ""
            case JobFire.OutcomeUnknown():
                changes = {"status": FireStatus.OUTCOME_UNKNOWN.value, "error": event.reason}
                counter = ""
            case _:
                return
        fire = self._batch.update(
            conn, self.t.job_fires, fid, updated_at=event.timestamp, **changes
        )
        if fire is None:
            raise LookupError(f"fire {fid} has no row: its Fired event was never projected")
        job = self._batch.update(conn, self.t.jobs, fire["job_id"], last_outcome=changes["status"])
        if job is not None and counter:
            job[counter] += 1

    def _new_fire(self, event: Any, fid: str, conn: Connection) -> None:
        status, counter, error = _fire_opening(event)
        self._batch.insert(
            self.t.job_fires,
            {
                "id": fid,
                "job_id": str(event.job_id),
                "scheduled_for": event.scheduled_for,
                "manual": event.manual,
                "status": status.value,
                "attempt": 1,
                "error": error,
                "confirmation_id": None,
                "next_retry_at": None,
                "updated_at": event.timestamp,
            },
        )
        job = self._batch.update(conn, self.t.jobs, str(event.job_id), last_outcome=status.value)
        if job is None:
            return
        job[counter] += 1
        if not event.manual:
            job["last_scheduled_for"] = event.scheduled_for
            if job["status"] == "active":
                job["next_fire_at"] = self._next_fire(job, event.scheduled_for)
