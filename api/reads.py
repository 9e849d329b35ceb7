"""The API's read side: pages and single rows from the relational views, never from the log.

These queries extend ``projections.queries.Views`` (by-id lookups, keyset paging, the timeline);
they read the same tables and belong there once that module settles.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.engine import Engine, RowMapping

from adapters.clock import Clock
from api import schemas as s
from api.document_schemas import DocumentOut, document_out
from api.problems import invalid_field
from commands.errors import NotFound
from projections.relational import (
    audit,
    confirmations,
    decisions,
    documents,
    effects,
    goals,
    job_fires,
    jobs,
)

M = TypeVar("M")
RECENT_FIRES = 20


def aware(value: Any) -> Any:
    """SQLite hands back naive datetimes for what was written as UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _plain(row: RowMapping) -> dict[str, Any]:
    return {key: aware(value) for key, value in row.items()}


def encode_cursor(ordered_by: datetime, ident: str) -> str:
    raw = json.dumps([ordered_by.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(when), str(UUID(ident))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise invalid_field(("query", "cursor"), "is not a cursor this API issued") from None


class ReadModel:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def _all(self, query: Any) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).mappings())

    def _one(self, query: Any, kind: str, ident: UUID) -> RowMapping:
        rows = self._all(query.limit(1))
        if not rows:
            raise NotFound(kind, ident)
        return rows[0]

    def _page(
        self,
        table: Table,
        ordered_by: str,
        newest_first: bool,
        where: Sequence[ColumnElement[bool]],
        limit: int,
        cursor: str | None,
        to_model: Callable[[RowMapping], M],
    ) -> s.Page[M]:
        """Keyset paging on (ordered_by, id): stable while rows are added."""
        column, ident = table.c[ordered_by], table.c.id
        query = select(table).where(*where)
        if cursor is not None:
            after, after_id = decode_cursor(cursor)
            if newest_first:
                query = query.where(or_(column < after, and_(column == after, ident < after_id)))
            else:
                query = query.where(or_(column > after, and_(column == after, ident > after_id)))
        order = (column.desc(), ident.desc()) if newest_first else (column.asc(), ident.asc())
        rows = self._all(query.order_by(*order).limit(limit + 1))
        more, rows = len(rows) > limit, rows[:limit]
        next_cursor = encode_cursor(rows[-1][ordered_by], rows[-1]["id"]) if more else None
        return s.Page[M](items=[to_model(row) for row in rows], next_cursor=next_cursor)

    # -- goals -----------------------------------------------------------------------------------

    def goals(self, status: str | None, limit: int, cursor: str | None) -> s.Page[s.GoalOut]:
        where = [goals.c.status == status] if status else []
        return self._page(goals, "submitted_at", True, where, limit, cursor, _goal)

    def goal(self, goal_id: UUID) -> s.GoalDetail:
        row = self._one(select(goals).where(goals.c.id == str(goal_id)), "goal", goal_id)
        decision = None
        if row["latest_decision_id"]:
            found = self._all(
                select(decisions).where(
                    decisions.c.goal_id == row["id"],
                    decisions.c.decision_id == row["latest_decision_id"],
                )
            )
            decision = s.DecisionOut.model_validate(_plain(found[0])) if found else None
        pending = self._all(
            select(confirmations)
            .where(confirmations.c.goal_id == str(goal_id), confirmations.c.status == "pending")
            .order_by(confirmations.c.requested_at, confirmations.c.id)
        )
        return s.GoalDetail(
            **_goal(row).model_dump(),
            latest_decision=decision,
            pending_confirmations=[self._confirmation(r) for r in pending],
        )

    def timeline(self, goal_id: UUID, after: int, limit: int) -> s.Timeline:
        self._one(select(goals.c.id).where(goals.c.id == str(goal_id)), "goal", goal_id)
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
        entries = [
            s.TimelineEntry(
                position=row["position"],
                event_id=row["event_id"],
                type=row["event_type"],
                aggregate_id=row["aggregate_id"],
                aggregate_version=row["aggregate_version"],
                actor=row["actor"],
                recorded_at=aware(row["recorded_at"]),
                command_id=row["command_id"],
                causation_id=row["causation_id"],
                caused_by_position=positions.get(row["causation_id"]),
                summary=row["summary"],
            )
            for row in rows
        ]
        next_after = entries[-1].position if more else None
        return s.Timeline(goal_id=goal_id, entries=entries, next_after=next_after)

    # -- confirmations ---------------------------------------------------------------------------

    def _confirmation(self, row: RowMapping) -> s.ConfirmationOut:
        values = _plain(row)
        left = None
        if values["status"] == "pending":
            left = max(0.0, (values["expires_at"] - self.clock.now()).total_seconds())
        return s.ConfirmationOut(**values, time_left_seconds=left)

    def confirmations(
        self, status: str | None, limit: int, cursor: str | None
    ) -> s.Page[s.ConfirmationOut]:
        where = [confirmations.c.status == status] if status else []
        return self._page(
            confirmations, "requested_at", False, where, limit, cursor, self._confirmation
        )

    def confirmation(self, confirmation_id: UUID) -> s.ConfirmationOut:
        query = select(confirmations).where(confirmations.c.id == str(confirmation_id))
        return self._confirmation(self._one(query, "confirmation", confirmation_id))

    # -- effects ---------------------------------------------------------------------------------

    def effects(self, status: str | None, limit: int, cursor: str | None) -> s.Page[s.EffectOut]:
        where = [effects.c.status == status] if status else []
        return self._page(effects, "started_at", False, where, limit, cursor, _effect)

    # -- jobs ------------------------------------------------------------------------------------

    def jobs(self, include_removed: bool, limit: int, cursor: str | None) -> s.Page[s.JobOut]:
        where = [] if include_removed else [jobs.c.status != "removed"]
        return self._page(jobs, "scheduled_at", False, where, limit, cursor, _job)

    def job(self, job_id: UUID) -> s.JobDetail:
        row = self._one(select(jobs).where(jobs.c.id == str(job_id)), "job", job_id)
        fires = self._all(
            select(job_fires)
            .where(job_fires.c.job_id == str(job_id))
            .order_by(job_fires.c.scheduled_for.desc())
            .limit(RECENT_FIRES)
        )
        return s.JobDetail(
            **_job(row).model_dump(),
            recent_fires=[s.FireOut.model_validate(_plain(f)) for f in fires],
        )

    # -- documents -------------------------------------------------------------------------------

    def documents(self, status: str | None, limit: int, cursor: str | None) -> s.Page[DocumentOut]:
        where = [documents.c.status == status] if status else []
        return self._page(documents, "registered_at", True, where, limit, cursor, _document)

    def document(self, document_id: UUID) -> DocumentOut:
        query = select(documents).where(documents.c.id == str(document_id))
        return _document(self._one(query, "document", document_id))


def _document(row: RowMapping) -> DocumentOut:
    return DocumentOut.model_validate(document_out(_plain(row)))


def _goal(row: RowMapping) -> s.GoalOut:
    return s.GoalOut.model_validate(_plain(row))


def _effect(row: RowMapping) -> s.EffectOut:
    return s.EffectOut.model_validate(_plain(row))


def _job(row: RowMapping) -> s.JobOut:
    return s.JobOut.model_validate(_plain(row))
