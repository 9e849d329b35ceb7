"""Read-side queries the process managers, CLI and API share. Views only, never the log.

Every query is one statement on the live tables by their stable names, so a rebuild's switch
(a rename in one transaction) is atomic for these readers. Rows come back as the database
returns them; the API (``api/reads.py``) turns them into its models and cursors, the CLI into
tables. Lists come two ways: capped lists in view order (the CLI, the process managers) and
keyset pages on (ordered column, id), stable while rows are added (the API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.engine import Engine, RowMapping

from projections.relational.tables import (
    audit,
    confirmations,
    decisions,
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
        scheduled_at=aware(row["scheduled_at"]),
        last_scheduled_for=aware(row["last_scheduled_for"]),
    )


# A keyset position: the ordered column's value and the id of the last row already seen.
Key = tuple[Any, str]


@dataclass(frozen=True)
class Page:
    """Rows in keyset order; ``next_key`` is the last row's key when more rows follow."""

    rows: list[RowMapping]
    next_key: Key | None


@dataclass(frozen=True)
class TimelineRows:
    """One goal's events in log order, with the position of each one's cause where known."""

    rows: list[RowMapping]
    cause_positions: dict[str, int]
    more: bool


class Views:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _all(self, query: Any) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).mappings())

    def _first(self, query: Any) -> RowMapping | None:
        rows = self._all(query.limit(1))
        return rows[0] if rows else None

    def _page(
        self,
        table: Table,
        ordered_by: str,
        newest_first: bool,
        where: Sequence[ColumnElement[bool]],
        limit: int,
        after: Key | None,
    ) -> Page:
        """Keyset paging on (ordered_by, id): stable while rows are added."""
        column, ident = table.c[ordered_by], table.c.id
        query = select(table).where(*where)
        if after is not None:
            when, after_id = after
            if newest_first:
                query = query.where(or_(column < when, and_(column == when, ident < after_id)))
            else:
                query = query.where(or_(column > when, and_(column == when, ident > after_id)))
        order = (column.desc(), ident.desc()) if newest_first else (column.asc(), ident.asc())
        rows = self._all(query.order_by(*order).limit(limit + 1))
        more, rows = len(rows) > limit, rows[:limit]
        return Page(rows, (rows[-1][ordered_by], rows[-1]["id"]) if more else None)

    # -- goals -----------------------------------------------------------------------------------

    def goals(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(goals).order_by(goals.c.submitted_at.desc()).limit(limit)
        if status:
            query = query.where(goals.c.status == status)
        return self._all(query)

    def goal_page(self, status: str | None, limit: int, after: Key | None) -> Page:
        where = [goals.c.status == status] if status else []
        return self._page(goals, "submitted_at", True, where, limit, after)

    def goal(self, goal_id: UUID) -> RowMapping | None:
        return self._first(select(goals).where(goals.c.id == str(goal_id)))

    def has_goal(self, goal_id: UUID) -> bool:
        return self._first(select(goals.c.id).where(goals.c.id == str(goal_id))) is not None

    def decision(self, goal_id: str, decision_id: str) -> RowMapping | None:
        found = self._all(
            select(decisions).where(
                decisions.c.goal_id == goal_id, decisions.c.decision_id == decision_id
            )
        )
        return found[0] if found else None

    def timeline(self, goal_id: UUID, after: int, limit: int) -> TimelineRows:
        """A goal's audit rows after log position ``after``, at most ``limit`` of them."""
        rows = self._all(
            select(audit)
            .where(audit.c.correlation_id == str(goal_id), audit.c.position > after)
            .order_by(audit.c.position)
            .limit(limit + 1)
        )
        more, rows = len(rows) > limit, rows[:limit]
        causes = {row["causation_id"] for row in rows}
        positions = {
            r["event_id"]: r["position"]
            for r in self._all(
                select(audit.c.event_id, audit.c.position).where(audit.c.event_id.in_(causes))
            )
        }
        return TimelineRows(rows, positions, more)

    # -- confirmations and effects ---------------------------------------------------------------

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

    def confirmation_page(self, status: str | None, limit: int, after: Key | None) -> Page:
        where = [confirmations.c.status == status] if status else []
        return self._page(confirmations, "requested_at", False, where, limit, after)

    def confirmation(self, confirmation_id: UUID) -> RowMapping | None:
        return self._first(select(confirmations).where(confirmations.c.id == str(confirmation_id)))

    def pending_confirmations(self, goal_id: UUID) -> list[RowMapping]:
        """A goal's open questions, oldest first."""
        return self._all(
            select(confirmations)
            .where(confirmations.c.goal_id == str(goal_id), confirmations.c.status == "pending")
            .order_by(confirmations.c.requested_at, confirmations.c.id)
        )

    def effects(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(effects).order_by(effects.c.started_at).limit(limit)
        if status:
            query = query.where(effects.c.status == status)
        return self._all(query)

    def effect_page(self, status: str | None, limit: int, after: Key | None) -> Page:
        where = [effects.c.status == status] if status else []
        return self._page(effects, "started_at", False, where, limit, after)

    # -- jobs and fires --------------------------------------------------------------------------

    def jobs(self, include_removed: bool = False) -> list[RowMapping]:
        query = select(jobs).order_by(jobs.c.scheduled_at)
        if not include_removed:
            query = query.where(jobs.c.status != "removed")
        return self._all(query)

    def job_page(self, include_removed: bool, limit: int, after: Key | None) -> Page:
        where = [] if include_removed else [jobs.c.status != "removed"]
        return self._page(jobs, "scheduled_at", False, where, limit, after)

    def job_view(self, job_id: UUID) -> RowMapping | None:
        """One job's whole view row (counters, next fire time), in any status."""
        return self._first(select(jobs).where(jobs.c.id == str(job_id)))

    def job(self, job_id: UUID) -> JobRow | None:
        """One job in any status, as the scheduler sees it."""
        row = self._first(select(jobs).where(jobs.c.id == str(job_id)))
        return None if row is None else job_row(row)

    def active_jobs(self) -> list[JobRow]:
        return [job_row(r) for r in self._all(select(jobs).where(jobs.c.status == "active"))]

    def fires(self, job_id: UUID | None = None, status: str | None = None) -> list[RowMapping]:
        query = select(job_fires).order_by(job_fires.c.scheduled_for)
        if job_id:
            query = query.where(job_fires.c.job_id == str(job_id))
        if status:
            query = query.where(job_fires.c.status == status)
        return self._all(query)

    def recent_fires(self, job_id: UUID, limit: int) -> list[RowMapping]:
        """A job's latest fires, newest first."""
        return self._all(
            select(job_fires)
            .where(job_fires.c.job_id == str(job_id))
            .order_by(job_fires.c.scheduled_for.desc())
            .limit(limit)
        )

    # -- documents, orders, positions, audit -----------------------------------------------------

    def documents(self, status: str | None = None, limit: int = 100) -> list[RowMapping]:
        query = select(documents).order_by(documents.c.registered_at.desc()).limit(limit)
        if status:
            query = query.where(documents.c.status == status)
        return self._all(query)

    def document(self, document_id: UUID) -> RowMapping | None:
        return self._first(select(documents).where(documents.c.id == str(document_id)))

    def document_page(self, status: str | None, limit: int, after: Key | None) -> Page:
        where = [documents.c.status == status] if status else []
        return self._page(documents, "registered_at", True, where, limit, after)

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


def aware(value: Any) -> Any:
    """SQLite hands back naive datetimes for what was written as UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
