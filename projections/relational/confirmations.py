"""Confirmations (a person's yes or no before a hazardous action) and the effects they allow."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from domain.confirmation import Confirmation
from domain.effect import Effect
from event_store.reader import LoggedEvent
from projections.relational.batch import Rows


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


class ConfirmationRows(Rows):
    def apply(self, logged: LoggedEvent, cid: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case Confirmation.Requested():
                self._batch.insert(
                    self.t.confirmations,
                    {
                        "id": cid,
                        "goal_id": _opt(event.goal_id),
                        "decision_id": _opt(event.decision_id),
                        "job_id": _opt(event.job_id),
                        "fire_id": _opt(event.fire_id),
                        "action": event.action,
                        "parameters": event.parameters,
                        "hazard": event.hazard,
                        "status": "pending",
                        "requested_at": event.timestamp,
                        "expires_at": event.expires_at,
                        "decided_by": None,
                        "decided_at": None,
                        "reason": None,
                    },
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
        self._batch.update(conn, self.t.confirmations, cid, decided_at=event.timestamp, **changes)


class EffectRows(Rows):
    def apply(self, logged: LoggedEvent, eid: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case Effect.Started():
                self._batch.insert(
                    self.t.effects,
                    {
                        "id": eid,
                        "confirmation_id": str(event.confirmation_id),
                        "goal_id": _opt(event.goal_id),
                        "action": event.action,
                        "status": "started",
                        "attempt": 1,
                        "result": None,
                        "error": None,
                        "happened": None,
                        "started_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
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
        self._batch.update(conn, self.t.effects, eid, updated_at=event.timestamp, **changes)
