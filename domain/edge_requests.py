"""Requests one node sends to the owner of an aggregate, and the owner's answer.

An aggregate is owned by the node that created it (its first event's node id); only the owner
writes it. A cloud operator who wants to grant or deny an edge's pending confirmation therefore
records an ``EdgeRequest`` (a cloud aggregate) that travels to the edge. The edge applies it with
its own decision rule (``decide_request``) and records its answer as an ``EdgeRequestOutcome``
(an edge aggregate, one per request: a request is answered once). If the edge decided otherwise
meanwhile, the answer is a conflict: the edge's own decision stands and is never overwritten.
The outcome syncs back like every edge event, and the cloud then resolves its request.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, derived_id, require_text
from domain.confirmation import ConfirmationStatus
from domain.edge import require_edge_node
from domain.errors import InvalidTransition
from domain.meta import CommandContext


class RequestKind(StrEnum):
    GRANT = "grant"
    DENY = "deny"


class RequestStatus(StrEnum):
    SENT = "sent"
    APPLIED = "applied"
    CONFLICTED = "conflicted"


APPLIED = "applied"


def decide_request(kind: RequestKind, status: ConfirmationStatus, expired: bool) -> str:
    """The owner's rule: ``applied``, or the conflict (what the owner had decided instead).

    A request applies only to a pending confirmation that has not expired by the owner's clock:
    a grant that arrives after the deadline is stale and never runs the action. The same answer
    again (a grant of a granted confirmation) is still a conflict: the owner decided it first,
    and a second grant must never look like the one that caused the execution.
    """
    if status is not ConfirmationStatus.PENDING:
        return f"already {status.value}"
    if expired:
        return "expired"
    return APPLIED


def outcome_id(request_id: UUID) -> UUID:
    return derived_id("edge-request-outcome", request_id)


class EdgeRequest(JanusAggregate):
    """Owned by the node that asks (the cloud): sent to ``node``, resolved by its answer."""

    @classmethod
    def make(
        cls,
        request_id: UUID,
        node: str,
        confirmation_id: UUID,
        kind: RequestKind,
        requested_by: str,
        reason: str | None,
        ctx: CommandContext,
    ) -> EdgeRequest:
        if kind is RequestKind.DENY:
            require_text("reason", reason or "")
        return cls._open(
            cls.Made,
            ctx,
            id=request_id,
            node=require_edge_node(node),
            confirmation_id=confirmation_id,
            kind=kind.value,
            requested_by=require_text("requested_by", requested_by),
            reason=reason,
        )

    class Made(JanusAggregate.Created):
        node: str
        confirmation_id: UUID
        kind: str
        requested_by: str
        reason: str | None

    def __init__(
        self,
        node: str,
        confirmation_id: UUID,
        kind: str,
        requested_by: str,
        reason: str | None,
    ) -> None:
        self.node = node
        self.confirmation_id = confirmation_id
        self.kind = RequestKind(kind)
        self.requested_by = requested_by
        self.reason = reason
        self.status = RequestStatus.SENT
        self.conflict: str | None = None

    def resolve(self, outcome: str, ctx: CommandContext) -> bool:
        """Record the owner's answer once; the same answer again is no news."""
        wanted = RequestStatus.APPLIED if outcome == APPLIED else RequestStatus.CONFLICTED
        if self.status is not RequestStatus.SENT:
            if self.status is wanted:
                return False
            raise InvalidTransition(f"edge request {self.id} is already {self.status.value}")
        self._record(self.Resolved, ctx, outcome=outcome)
        return True

    class Resolved(JanusAggregate.Event):
        outcome: str

        def apply(self, aggregate: Any) -> None:
            if self.outcome == APPLIED:
                aggregate.status = RequestStatus.APPLIED
            else:
                aggregate.status = RequestStatus.CONFLICTED
                aggregate.conflict = self.outcome


class EdgeRequestOutcome(JanusAggregate):
    """Owned by the edge: its answer to one request (its id is derived from the request's)."""

    @classmethod
    def answer(
        cls,
        request_id: UUID,
        confirmation_id: UUID,
        kind: RequestKind,
        outcome: str,
        ctx: CommandContext,
    ) -> EdgeRequestOutcome:
        return cls._open(
            cls.Answered,
            ctx,
            id=outcome_id(request_id),
            request_id=request_id,
            confirmation_id=confirmation_id,
            kind=kind.value,
            outcome=outcome,
        )

    class Answered(JanusAggregate.Created):
        request_id: UUID
        confirmation_id: UUID
        kind: str
        outcome: str

    def __init__(self, request_id: UUID, confirmation_id: UUID, kind: str, outcome: str) -> None:
        self.request_id = request_id
        self.confirmation_id = confirmation_id
        self.kind = RequestKind(kind)
        self.outcome = outcome

    @property
    def conflicted(self) -> bool:
        return self.outcome != APPLIED
