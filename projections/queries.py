"""Read-side queries the process managers, CLI and API share. Views only, never the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.engine import Engine, RowMapping

from projections.relational import confirmations, effects, goals, job_fires, jobs


@dataclass(frozen=True)
class JobRow:
    id: UUID
    name: str
    trigger: dict[str, Any]
    action: dict[str, Any]
    misfire_policy: str
    max_catch_up: int
    max_attempts: int
    status: str
    scheduled_at: datetime
    last_scheduled_for: datetime | None


class Views:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _all(self, query: Any) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).mappings())

    def confirmations(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(confirmations).order_by(confirmations.c.requested_at).limit(limit)
        if status:
            query = query.where(confirmations.c.status == status)
        return self._all(query)

    def confirmations_due(self, now: datetime, limit: int = 100) -> list[UUID]:
        query = (
            select(confirmations.c.id)
            .where(confirmations.c.status == "pending")
            .where(confirmations.c.expires_at <= now)
            .order_by(confirmations.c.expires_at)
            .limit(limit)
        )
        return [UUID(row["id"]) for row in self._all(query)]

    def goals(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(goals).order_by(goals.c.submitted_at.desc()).limit(limit)
        if status:
            query = query.where(goals.c.status == status)
        return self._all(query)

    def effects(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(effects).order_by(effects.c.started_at).limit(limit)
        if status:
            query = query.where(effects.c.status == status)
        return self._all(query)

    def jobs(self, include_removed: bool = False) -> list[RowMapping]:
        query = select(jobs).order_by(jobs.c.scheduled_at)
        if not include_removed:
            query = query.where(jobs.c.status != "removed")
        return self._all(query)

    def active_jobs(self) -> list[JobRow]:
        rows = self._all(select(jobs).where(jobs.c.status == "active"))
        return [
            JobRow(
                id=UUID(r["id"]),
                name=r["name"],
                trigger=r["trigger"],
                action=r["action"],
                misfire_policy=r["misfire_policy"],
                max_catch_up=r["max_catch_up"],
                max_attempts=r["max_attempts"],
                status=r["status"],
                scheduled_at=_aware(r["scheduled_at"]),
                last_scheduled_for=_aware(r["last_scheduled_for"]),
            )
            for r in rows
        ]

    def fires(self, job_id: UUID | None = None, status: str | None = None) -> list[RowMapping]:
        query = select(job_fires).order_by(job_fires.c.scheduled_for)
        if job_id:
            query = query.where(job_fires.c.job_id == str(job_id))
        if status:
            query = query.where(job_fires.c.status == status)
        return self._all(query)


def _aware(value: Any) -> Any:
    """SQLite hands back naive datetimes for what was written as UTC."""
    from datetime import UTC

    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
