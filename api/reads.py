"""The API's read side: its models, cursors and 404s over ``projections.queries.Views``.

Every query lives in ``Views`` (the CLI and the process managers read the same tables through
it); this module only shapes its rows for HTTP: aware datetimes, pydantic models, opaque
cursors over the views' keyset pages, and ``NotFound`` for a row that is not there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy.engine import Engine, RowMapping

from adapters.clock import Clock
from api import schemas as s
from api.document_schemas import DocumentOut, document_out
from api.problems import invalid_field
from commands.errors import NotFound
from projections.queries import Key, Page, Views, aware

M = TypeVar("M")
RECENT_FIRES = 20


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


def _after(cursor: str | None) -> Key | None:
    return None if cursor is None else decode_cursor(cursor)


def _page(page: Page, to_model: Callable[[RowMapping], M]) -> s.Page[M]:
    next_cursor = encode_cursor(*page.next_key) if page.next_key is not None else None
    return s.Page[M](items=[to_model(row) for row in page.rows], next_cursor=next_cursor)


def _found(row: RowMapping | None, kind: str, ident: UUID) -> RowMapping:
    if row is None:
        raise NotFound(kind, ident)
    return row


class ReadModel:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.views = Views(engine)
        self.clock = clock

    # -- goals -----------------------------------------------------------------------------------

    def goals(self, status: str | None, limit: int, cursor: str | None) -> s.Page[s.GoalOut]:
        return _page(self.views.goal_page(status, limit, _after(cursor)), _goal)

    def goal(self, goal_id: UUID) -> s.GoalDetail:
        row = _found(self.views.goal(goal_id), "goal", goal_id)
        decision = None
        if row["latest_decision_id"]:
            found = self.views.decision(row["id"], row["latest_decision_id"])
            decision = s.DecisionOut.model_validate(_plain(found)) if found else None
        pending = self.views.pending_confirmations(goal_id)
        return s.GoalDetail(
            **_goal(row).model_dump(),
            latest_decision=decision,
            pending_confirmations=[self._confirmation(r) for r in pending],
        )

    def timeline(self, goal_id: UUID, after: int, limit: int) -> s.Timeline:
        if not self.views.has_goal(goal_id):
            raise NotFound("goal", goal_id)
        found = self.views.timeline(goal_id, after, limit)
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
                caused_by_position=found.cause_positions.get(row["causation_id"]),
                summary=row["summary"],
            )
            for row in found.rows
        ]
        next_after = entries[-1].position if found.more else None
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
        page = self.views.confirmation_page(status, limit, _after(cursor))
        return _page(page, self._confirmation)

    def confirmation(self, confirmation_id: UUID) -> s.ConfirmationOut:
        row = self.views.confirmation(confirmation_id)
        return self._confirmation(_found(row, "confirmation", confirmation_id))

    # -- effects ---------------------------------------------------------------------------------

    def effects(self, status: str | None, limit: int, cursor: str | None) -> s.Page[s.EffectOut]:
        return _page(self.views.effect_page(status, limit, _after(cursor)), _effect)

    # -- jobs ------------------------------------------------------------------------------------

    def jobs(self, include_removed: bool, limit: int, cursor: str | None) -> s.Page[s.JobOut]:
        return _page(self.views.job_page(include_removed, limit, _after(cursor)), _job)

    def job(self, job_id: UUID) -> s.JobDetail:
        row = _found(self.views.job_view(job_id), "job", job_id)
        fires = self.views.recent_fires(job_id, RECENT_FIRES)
        return s.JobDetail(
            **_job(row).model_dump(),
            recent_fires=[s.FireOut.model_validate(_plain(f)) for f in fires],
        )

    # -- documents -------------------------------------------------------------------------------

    def documents(self, status: str | None, limit: int, cursor: str | None) -> s.Page[DocumentOut]:
        return _page(self.views.document_page(status, limit, _after(cursor)), _document)

    def document(self, document_id: UUID) -> DocumentOut:
        row = self.views.document(document_id)
        return _document(_found(row, "document", document_id))


def _document(row: RowMapping) -> DocumentOut:
    return DocumentOut.model_validate(document_out(_plain(row)))


def _goal(row: RowMapping) -> s.GoalOut:
    return s.GoalOut.model_validate(_plain(row))


def _effect(row: RowMapping) -> s.EffectOut:
    return s.EffectOut.model_validate(_plain(row))


def _job(row: RowMapping) -> s.JobOut:
    return s.JobOut.model_validate(_plain(row))
