"""Requests across nodes: the cloud asks an edge to grant or deny; the edge applies or refuses.

Both sides go through the command runner (one atomic save, retries on a concurrent writer). On
the edge the confirmation's change and the request's outcome are saved together, so a request
is answered exactly once: a redelivered request finds its outcome and records nothing, and the
executor sees at most one grant.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from pydantic import Field

from adapters.clock import Clock
from commands.errors import IdConflict, NotFound
from commands.invocation import CommandResult, Invocation
from commands.models import MAX_ACTOR_NAME, Command, Reason
from commands.runner import CommandRunner, ContextFactory, Decided
from domain.confirmation import Confirmation
from domain.edge_requests import (
    APPLIED,
    EdgeRequest,
    EdgeRequestOutcome,
    RequestKind,
    decide_request,
    outcome_id,
)
from domain.errors import InvalidTransition, InvalidValue
from event_store.edge_store import EdgeSql


def edge_owner(runner: CommandRunner, aggregate_id: UUID) -> str | None:
    """The edge that owns an aggregate the edge ingester brought here; None: not an edge's.

    Only the owner writes an aggregate: here, such an aggregate is changed by a request to its
    edge (``EdgeRequests.send``), never directly.
    """
    first: Any = next(iter(runner.app.events.get(aggregate_id, lte=1)), None)
    if first is None or first.meta.node_id == runner.node_id:
        return None
    if not EdgeSql.of(runner.app).known([first.meta.event_id]):
        return None  # imported (`janus events import`), not synced: this node's to decide
    node: str = first.meta.node_id
    return node


def require_not_an_edge_s(runner: CommandRunner, aggregate_id: UUID) -> None:
    node = edge_owner(runner, aggregate_id)
    if node is not None:
        raise InvalidTransition(
            f"{aggregate_id} belongs to edge {node}: only the edge decides it; "
            f"send it a request (janus edge grant|deny {aggregate_id})"
        )


class SendEdgeRequest(Command):
    """Ask the edge that owns a confirmation to grant or deny it."""

    confirmation_id: UUID
    kind: RequestKind
    reason: Reason | None = None
    request_id: UUID | None = None
    # The edge the caller believes owns it (the API's path names it); None: whichever does.
    node: str | None = None


class ApplyEdgeRequest(Command):
    """A request as it reaches its owner (the edge)."""

    request_id: UUID
    confirmation_id: UUID
    kind: RequestKind
    reason: Reason | None = None
    requested_by: Annotated[str, Field(min_length=1, max_length=MAX_ACTOR_NAME)]


class EdgeRequests:
    def __init__(self, runner: CommandRunner, clock: Clock) -> None:
        self.runner = runner
        self.clock = clock

    def send(self, cmd: SendEdgeRequest, inv: Invocation) -> CommandResult:
        """Record the request (the cloud never writes the edge's confirmation itself)."""
        request_id = cmd.request_id or uuid4()

        def decide(ctx: ContextFactory) -> Decided:
            found = self.runner.existing(EdgeRequest, request_id)
            if found is not None:
                same = (found.confirmation_id, found.kind, found.reason) == (
                    cmd.confirmation_id,
                    cmd.kind,
                    cmd.reason,
                )
                if not same:
                    raise IdConflict(f"edge request {request_id} was sent with other values")
                return Decided(request_id, "already_sent")
            self.runner.load(Confirmation, cmd.confirmation_id)
            node = edge_owner(self.runner, cmd.confirmation_id)
            if node is None:
                raise InvalidValue(
                    f"confirmation {cmd.confirmation_id} is this node's own (not synced from "
                    "an edge): grant or deny it directly"
                )
            if cmd.node is not None and cmd.node != node:
                raise NotFound(f"confirmation of edge {cmd.node}", cmd.confirmation_id)
            request = EdgeRequest.make(
                request_id,
                node,
                cmd.confirmation_id,
                cmd.kind,
                str(inv.actor),
                cmd.reason,
                ctx(f"edge-request:{request_id}"),
            )
            return Decided(request_id, "sent", (request,))

        return self.runner.run(cmd, inv, decide)

    def apply(self, cmd: ApplyEdgeRequest, inv: Invocation) -> CommandResult:
        """On the owner: apply the request, or record that it conflicts with what was decided."""

        def decide(ctx: ContextFactory) -> Decided:
            if self.runner.exists(outcome_id(cmd.request_id)):
                answered: EdgeRequestOutcome = self.runner.load(
                    EdgeRequestOutcome, outcome_id(cmd.request_id)
                )
                return Decided(answered.id, f"already_{_word(answered.outcome)}")
            confirmation: Confirmation = self.runner.load(Confirmation, cmd.confirmation_id)
            now = self.clock.now()
            outcome = decide_request(cmd.kind, confirmation.status, confirmation.is_expired_at(now))
            c = ctx(confirmation.correlation_id)
            by = f"{cmd.requested_by} via {inv.actor}"
            if outcome == APPLIED and cmd.kind is RequestKind.GRANT:
                confirmation.grant(by, now, c)
            elif outcome == APPLIED:
                confirmation.deny(by, cmd.reason or "denied by the cloud", now, c)
            answer = EdgeRequestOutcome.answer(
                cmd.request_id, cmd.confirmation_id, cmd.kind, outcome, c
            )
            return Decided(answer.id, _word(outcome), (confirmation, answer))

        return self.runner.run(cmd, inv, decide)


def _word(outcome: str) -> str:
    return "applied" if outcome == APPLIED else "conflicted"
