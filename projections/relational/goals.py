"""Goals and the decisions recorded on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from domain.goal import Goal
from event_store.reader import LoggedEvent
from projections.relational.batch import Rows


class GoalRows(Rows):
    def apply(self, logged: LoggedEvent, gid: str, conn: Connection) -> None:
        event = logged.event
        changes: dict[str, Any] = {"updated_at": event.timestamp}
        match event:
            case Goal.Submitted():
                self._batch.insert(
                    self.t.goals,
                    {
                        "id": gid,
                        "text": event.text,
                        "submitted_by": event.submitted_by,
                        "priority": event.priority,
                        "status": "submitted",
                        "latest_decision_id": None,
                        "latest_action": None,
                        "outcome": None,
                        "submitted_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
                )
                return
            case Goal.Planned():
                changes["status"] = "planned"
            case Goal.DecisionRecorded():
                changes["latest_decision_id"] = str(event.decision_id)
                changes["latest_action"] = str(event.action.get("name", ""))
                self._batch.append(
                    self.t.decisions,
                    {
                        "decision_id": str(event.decision_id),
                        "goal_id": gid,
                        "model": event.model,
                        "action": event.action,
                        "context_ids": list(event.context_ids),
                        "recorded_at": event.timestamp,
                        "position": logged.position,
                    },
                )
            case Goal.Completed():
                changes.update(status="completed", outcome=event.summary)
            case Goal.Failed():
                changes.update(status="failed", outcome=event.reason)
            case Goal.Cancelled():
                changes.update(status="cancelled", outcome=event.reason)
        self._batch.update(conn, self.t.goals, gid, **changes)
