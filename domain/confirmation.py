"""A hazardous action waiting for a human answer. Its whole state lives in events."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.actions import HazardClass
from domain.base import MAX_NAME, JanusAggregate, require_text
from domain.errors import AlreadyDecided, ConfirmationExpired, InvalidTransition, InvalidValue
from domain.meta import CommandContext

__all__ = ["Confirmation", "ConfirmationStatus", "HazardClass"]


class ConfirmationStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Confirmation(JanusAggregate):
    """Requested by a goal's decision, or by a job's fire (then ``job_id`` and ``fire_id``)."""

    @classmethod
    def request(
        cls,
        confirmation_id: UUID,
        goal_id: UUID | None,
        decision_id: UUID | None,
        action: str,
        parameters: dict[str, Any],
        hazard: HazardClass,
        requested_at: datetime,
        expires_at: datetime,
        ctx: CommandContext,
        job_id: UUID | None = None,
        fire_id: UUID | None = None,
    ) -> Confirmation:
        require_text("action", action, limit=MAX_NAME)
        if expires_at <= requested_at:
            raise InvalidValue("expires_at must be after the time of the request")
        if (goal_id is None) == (fire_id is None) or (fire_id is None) != (job_id is None):
            raise InvalidValue("a confirmation is requested by a goal's decision or a job's fire")
        return cls._open(
            cls.Requested,
            ctx,
            id=confirmation_id,
            goal_id=goal_id,
            decision_id=decision_id,
            action=action,
            parameters=parameters,
            hazard=hazard.value,
            expires_at=expires_at,
            job_id=job_id,
            fire_id=fire_id,
        )

    class Requested(JanusAggregate.Created):
        # Version 2: a job fire can be the requester (job_id, fire_id; goal and decision None).
        class_version = 2

        goal_id: UUID | None
        decision_id: UUID | None
        action: str
        parameters: dict[str, Any]
        hazard: str
        expires_at: datetime
        job_id: UUID | None
        fire_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["job_id"] = None
            state["fire_id"] = None

    def __init__(
        self,
        goal_id: UUID | None,
        decision_id: UUID | None,
        action: str,
        parameters: dict[str, Any],
        hazard: str,
        expires_at: datetime,
        job_id: UUID | None = None,
        fire_id: UUID | None = None,
    ) -> None:
        self.goal_id = goal_id
        self.decision_id = decision_id
        self.job_id = job_id
        self.fire_id = fire_id
        self.action = action
        self.parameters = parameters
        self.hazard = HazardClass(hazard)
        self.expires_at = expires_at
        self.status = ConfirmationStatus.PENDING
        self.decided_by: str | None = None
        self.decided_at: datetime | None = None
        self.reason: str | None = None

    @property
    def correlation_id(self) -> str:
        """The story this confirmation belongs to: its goal's, or its job's."""
        return str(self.goal_id or self.job_id)

    def is_expired_at(self, now: datetime) -> bool:
        return now >= self.expires_at

    def _require_pending(self, wanted: ConfirmationStatus, now: datetime) -> None:
        if self.status is not ConfirmationStatus.PENDING:
            raise AlreadyDecided(
                f"confirmation {self.id} is already {self.status.value}, not {wanted.value}"
            )
        if self.is_expired_at(now) and wanted is not ConfirmationStatus.CANCELLED:
            raise ConfirmationExpired(
                f"confirmation {self.id} expired at {self.expires_at.isoformat()}"
            )

    def grant(self, granted_by: str, now: datetime, ctx: CommandContext) -> bool:
        """Grant once. A repeated grant is answered with the first one and records nothing.

        Returns whether a new fact was recorded.
        """
        if self.status is ConfirmationStatus.GRANTED:
            return False
        self._require_pending(ConfirmationStatus.GRANTED, now)
        self._record(self.Granted, ctx, granted_by=require_text("granted_by", granted_by))
        return True

    class Granted(JanusAggregate.Event):
        granted_by: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ConfirmationStatus.GRANTED
            aggregate.decided_by = self.granted_by
            aggregate.decided_at = self.timestamp

    def deny(self, denied_by: str, reason: str, now: datetime, ctx: CommandContext) -> bool:
        if self.status is ConfirmationStatus.DENIED:
            return False
        self._require_pending(ConfirmationStatus.DENIED, now)
        self._record(
            self.Denied,
            ctx,
            denied_by=require_text("denied_by", denied_by),
            reason=require_text("reason", reason),
        )
        return True

    class Denied(JanusAggregate.Event):
        denied_by: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ConfirmationStatus.DENIED
            aggregate.decided_by = self.denied_by
            aggregate.decided_at = self.timestamp
            aggregate.reason = self.reason

    def expire(self, now: datetime, ctx: CommandContext) -> bool:
        if self.status is ConfirmationStatus.EXPIRED:
            return False
        if self.status is not ConfirmationStatus.PENDING:
            raise AlreadyDecided(f"confirmation {self.id} is already {self.status.value}")
        if not self.is_expired_at(now):
            raise InvalidTransition(
                f"confirmation {self.id} does not expire until {self.expires_at.isoformat()}"
            )
        self._record(self.Expired, ctx, deadline=self.expires_at)
        return True

    class Expired(JanusAggregate.Event):
        deadline: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ConfirmationStatus.EXPIRED
            aggregate.decided_at = self.timestamp

    def cancel(self, cancelled_by: str, reason: str, now: datetime, ctx: CommandContext) -> bool:
        if self.status is ConfirmationStatus.CANCELLED:
            return False
        self._require_pending(ConfirmationStatus.CANCELLED, now)
        self._record(
            self.Cancelled,
            ctx,
            cancelled_by=require_text("cancelled_by", cancelled_by),
            reason=require_text("reason", reason),
        )
        return True

    class Cancelled(JanusAggregate.Event):
        cancelled_by: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ConfirmationStatus.CANCELLED
            aggregate.decided_by = self.cancelled_by
            aggregate.decided_at = self.timestamp
            aggregate.reason = self.reason
