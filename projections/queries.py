"""Read-side queries the process managers, CLI and API share. Views only, never the log.

Every query is one statement on the live tables by their stable names, so a rebuild's switch
(a rename in one transaction) is atomic for these readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.engine import Engine, RowMapping

from projections.relational import (
    audit,
    confirmations,
    documents,
    effects,
    goals,
    job_fires,
    jobs,
    orders,
    positions,
)


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


def job_row(row: Mapping[Any, Any]) -> JobRow:
    return JobRow(
        id=UUID(row["id"]),
        name=row["name"],
        trigger=row["trigger"],
        action=row["action"],
        misfire_policy=row["misfire_policy"],
        max_catch_up=row["max_catch_up"],
        max_attempts=row["max_attempts"],
        status=row["status"],
        scheduled_at=_aware(row["scheduled_at"]),
        last_scheduled_for=_aware(row["last_scheduled_for"]),
    )


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

    def job(self, job_id: UUID) -> JobRow | None:
        """One job in any status, as the scheduler sees it."""
        rows = self._all(select(jobs).where(jobs.c.id == str(job_id)).limit(1))
        return job_row(rows[0]) if rows else None

    def active_jobs(self) -> list[JobRow]:
        return [job_row(r) for r in self._all(select(jobs).where(jobs.c.status == "active"))]

    def fires(self, job_id: UUID | None = None, status: str | None = None) -> list[RowMapping]:
        query = select(job_fires).order_by(job_fires.c.scheduled_for)
        if job_id:
            query = query.where(job_fires.c.job_id == str(job_id))
        if status:
            query = query.where(job_fires.c.status == status)
        return self._all(query)

    def documents(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(documents).order_by(documents.c.registered_at.desc()).limit(limit)
        if status:
            query = query.where(documents.c.status == status)
        return self._all(query)

    def document(self, document_id: UUID) -> RowMapping | None:
        rows = self._all(select(documents).where(documents.c.id == str(document_id)).limit(1))
        return rows[0] if rows else None

    def orders(
        self, status: str | None = None, symbol: str | None = None, limit: int = 100
    ) -> list[RowMapping]:
        query = select(orders).order_by(orders.c.proposed_at.desc()).limit(limit)
        if status:
            query = query.where(orders.c.status == status)
        if symbol:
            query = query.where(orders.c.symbol == symbol)
        return self._all(query)

    def positions(self, include_flat: bool = False) -> list[RowMapping]:
        """Net quantity and average cost per symbol; flat ones only when asked."""
        rows = self._all(select(positions).order_by(positions.c.symbol))
        return [r for r in rows if include_flat or r["quantity"] != 0]

    def audit(
        self,
        correlation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RowMapping]:
        """The audit trail in log order: one goal's story, or everything since a time."""
        query = select(audit).order_by(audit.c.position).limit(limit)
        if correlation_id:
            query = query.where(audit.c.correlation_id == correlation_id)
        if since:
            query = query.where(audit.c.recorded_at >= since)
        return self._all(query)


def _aware(value: Any) -> Any:
    """SQLite hands back naive datetimes for what was written as UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
