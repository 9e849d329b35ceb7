"""Relational views: goals, decisions, confirmations, effects, jobs, fires, and the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    update,
)
from sqlalchemy.engine import Connection

from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.effect import Effect
from domain.goal import Goal
from domain.job import FireStatus, Job, JobFire
from event_store.reader import LoggedEvent
from projections.runner import SqlProjection

metadata = MetaData()

ID = String(36)

goals = Table(
    "goals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("text", Text, nullable=False),
    Column("submitted_by", String(200), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("latest_decision_id", ID),
    Column("latest_action", String(200)),
    Column("outcome", Text),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", ID, primary_key=True),
    Column("goal_id", ID, nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("action", JSON, nullable=False),
    Column("context_ids", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("position", Integer, nullable=False),
)

confirmations = Table(
    "confirmations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("goal_id", ID, nullable=False, index=True),
    Column("decision_id", ID, nullable=False),
    Column("action", String(200), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("hazard", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", DateTime(timezone=True)),
    Column("reason", Text),
    Index("confirmations_status_deadline", "status", "expires_at"),
)

effects = Table(
    "effects",
    metadata,
    Column("id", ID, primary_key=True),
    Column("confirmation_id", ID, nullable=False, unique=True),
    Column("goal_id", ID, nullable=False, index=True),
    Column("action", String(200), nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("result", JSON),
    Column("error", Text),
    Column("happened", Boolean),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("action", JSON, nullable=False),
    Column("misfire_policy", String(20), nullable=False),
    Column("max_catch_up", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("scheduled_at", DateTime(timezone=True), nullable=False),
    Column("last_scheduled_for", DateTime(timezone=True)),
    Column("last_outcome", String(20)),
    Column("fired_count", Integer, nullable=False, default=0),
    Column("succeeded_count", Integer, nullable=False, default=0),
    Column("failed_count", Integer, nullable=False, default=0),
    Column("missed_count", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

job_fires = Table(
    "job_fires",
    metadata,
    Column("id", ID, primary_key=True),
    Column("job_id", ID, nullable=False),
    Column("scheduled_for", DateTime(timezone=True), nullable=False),
    Column("manual", Boolean, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("error", Text),
    Column("next_retry_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("job_fires_job_time", "job_id", "scheduled_for"),
)

audit = Table(
    "audit",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("event_id", ID, nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    Column("aggregate_id", ID, nullable=False, index=True),
    Column("aggregate_version", Integer, nullable=False),
    Column("correlation_id", String(100), nullable=False, index=True),
    Column("causation_id", String(100), nullable=False),
    Column("command_id", String(200), nullable=False),
    Column("actor", String(250), nullable=False),
    Column("node_id", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("summary", Text, nullable=False),
)


def _summary(event: Any) -> str:
    skip = {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}
    fields = {k: v for k, v in vars(event).items() if k not in skip}
    text = ", ".join(f"{k}={v}" for k, v in fields.items())
    return text if len(text) <= 500 else text[:497] + "..."


class RelationalProjection(SqlProjection):
    name = "relational"
    version = 1
    metadata = metadata

    def process_event(self, logged: LoggedEvent, conn: Connection) -> None:
        event = logged.event
        if isinstance(event, CommandRecord.Event):
            return
        self._audit(logged, conn)
        if isinstance(event, Goal.Event):
            self._goal(logged, conn)
        elif isinstance(event, Confirmation.Event):
            self._confirmation(event, conn)
        elif isinstance(event, Effect.Event):
            self._effect(event, conn)
        elif isinstance(event, Job.Event):
            self._job(event, conn)
        elif isinstance(event, JobFire.Event):
            self._fire(event, conn)

    def _audit(self, logged: LoggedEvent, conn: Connection) -> None:
        event = logged.event
        meta = event.meta
        conn.execute(
            insert(audit).values(
                position=logged.position,
                event_id=str(meta.event_id),
                event_type=logged.type_name,
                aggregate_id=str(logged.originator_id),
                aggregate_version=logged.originator_version,
                correlation_id=meta.correlation_id,
                causation_id=meta.causation_id,
                command_id=meta.command_id,
                actor=str(meta.actor),
                node_id=meta.node_id,
                recorded_at=event.timestamp,
                summary=_summary(event),
            )
        )

    def _goal(self, logged: LoggedEvent, conn: Connection) -> None:
        event = logged.event
        gid = str(event.originator_id)
        changes: dict[str, Any] = {"updated_at": event.timestamp}
        match event:
            case Goal.Submitted():
                conn.execute(
                    insert(goals).values(
                        id=gid,
                        text=event.text,
                        submitted_by=event.submitted_by,
                        priority=event.priority,
                        status="submitted",
                        submitted_at=event.timestamp,
                        updated_at=event.timestamp,
                    )
                )
                return
            case Goal.Planned():
                changes["status"] = "planned"
            case Goal.DecisionRecorded():
                changes["latest_decision_id"] = str(event.decision_id)
                changes["latest_action"] = str(event.action.get("name", ""))
                conn.execute(
                    insert(decisions).values(
                        decision_id=str(event.decision_id),
                        goal_id=gid,
                        model=event.model,
                        action=event.action,
                        context_ids=list(event.context_ids),
                        recorded_at=event.timestamp,
                        position=logged.position,
                    )
                )
            case Goal.Completed():
                changes.update(status="completed", outcome=event.summary)
            case Goal.Failed():
                changes.update(status="failed", outcome=event.reason)
            case Goal.Cancelled():
                changes.update(status="cancelled", outcome=event.reason)
        conn.execute(update(goals).where(goals.c.id == gid).values(**changes))

    def _confirmation(self, event: Any, conn: Connection) -> None:
        cid = str(event.originator_id)
        match event:
            case Confirmation.Requested():
                conn.execute(
                    insert(confirmations).values(
                        id=cid,
                        goal_id=str(event.goal_id),
                        decision_id=str(event.decision_id),
                        action=event.action,
                        parameters=event.parameters,
                        hazard=event.hazard,
                        status="pending",
                        requested_at=event.timestamp,
                        expires_at=event.expires_at,
                    )
                )
                return
            case Confirmation.Granted():
                changes = {"status": "granted", "decided_by": event.granted_by}
            case Confirmation.Denied():
                changes = {
                    "status": "denied",
                    "decided_by": event.denied_by,
                    "reason": event.reason,
                }
            case Confirmation.Expired():
                changes = {"status": "expired"}
            case Confirmation.Cancelled():
                changes = {
                    "status": "cancelled",
                    "decided_by": event.cancelled_by,
                    "reason": event.reason,
                }
            case _:
                return
        conn.execute(
            update(confirmations)
            .where(confirmations.c.id == cid)
            .values(decided_at=event.timestamp, **changes)
        )

    def _effect(self, event: Any, conn: Connection) -> None:
        eid = str(event.originator_id)
        match event:
            case Effect.Started():
                conn.execute(
                    insert(effects).values(
                        id=eid,
                        confirmation_id=str(event.confirmation_id),
                        goal_id=str(event.goal_id),
                        action=event.action,
                        status="started",
                        attempt=1,
                        started_at=event.timestamp,
                        updated_at=event.timestamp,
                    )
                )
                return
            case Effect.AttemptStarted():
                changes: dict[str, Any] = {"status": "started", "attempt": event.attempt}
            case Effect.Succeeded():
                changes = {"status": "succeeded", "result": event.result}
            case Effect.Failed():
                changes = {"status": "failed", "error": event.error}
            case Effect.OutcomeUnknown():
                changes = {"status": "outcome_unknown", "error": event.reason}
            case Effect.Reconciled():
                changes = {"status": "reconciled", "happened": event.happened}
            case _:
                return
        conn.execute(
            update(effects).where(effects.c.id == eid).values(updated_at=event.timestamp, **changes)
        )

    def _job(self, event: Any, conn: Connection) -> None:
        jid = str(event.originator_id)
        match event:
            case Job.Scheduled():
                conn.execute(
                    insert(jobs).values(
                        id=jid,
                        name=event.name,
                        trigger=event.trigger,
                        action=event.action,
                        misfire_policy=event.misfire_policy,
                        max_catch_up=event.max_catch_up,
                        max_attempts=event.max_attempts,
                        status="active",
                        scheduled_at=event.timestamp,
                        fired_count=0,
                        succeeded_count=0,
                        failed_count=0,
                        missed_count=0,
                        updated_at=event.timestamp,
                    )
                )
                return
            case Job.Paused():
                status = "paused"
            case Job.Resumed():
                status = "active"
            case Job.Removed():
                status = "removed"
            case _:
                return
        conn.execute(
            update(jobs).where(jobs.c.id == jid).values(status=status, updated_at=event.timestamp)
        )

    def _fire(self, event: Any, conn: Connection) -> None:
        fid = str(event.originator_id)
        match event:
            case JobFire.Fired() | JobFire.Missed():
                self._new_fire(event, conn)
                return
            case JobFire.Succeeded():
                changes: dict[str, Any] = {"status": FireStatus.SUCCEEDED.value, "error": None}
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
        conn.execute(
            update(job_fires)
            .where(job_fires.c.id == fid)
            .values(updated_at=event.timestamp, **changes)
        )
        job_id = conn.execute(job_fires.select().where(job_fires.c.id == fid)).one().job_id
        job_changes: dict[str, Any] = {"last_outcome": changes["status"]}
        if counter:
            job_changes[counter] = getattr(jobs.c, counter) + 1
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**job_changes))

    def _new_fire(self, event: Any, conn: Connection) -> None:
        missed = isinstance(event, JobFire.Missed)
        status = FireStatus.MISSED if missed else FireStatus.FIRED
        conn.execute(
            insert(job_fires).values(
                id=str(event.originator_id),
                job_id=str(event.job_id),
                scheduled_for=event.scheduled_for,
                manual=event.manual,
                status=status.value,
                attempt=1,
                error=event.reason if missed else None,
                updated_at=event.timestamp,
            )
        )
        counter = jobs.c.missed_count if missed else jobs.c.fired_count
        values: dict[str, Any] = {
            counter.name: counter + 1,
            "last_outcome": status.value,
        }
        if not event.manual:
            values["last_scheduled_for"] = event.scheduled_for
        conn.execute(update(jobs).where(jobs.c.id == str(event.job_id)).values(**values))
