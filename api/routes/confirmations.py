"""Confirmations: hazardous actions waiting for a human answer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api import schemas as s
from api.actions import accepted, grant
from api.deps import Call, Cursor, FreshViewer, Limit, OperatorCall, Produced
from api.problems import responses
from commands import models as m
from domain.confirmation import ConfirmationStatus

router = APIRouter(prefix="/v1/confirmations", tags=["confirmations"])

ANSWER = responses(400, 401, 403, 404, 409, 410, 413, 422, 503)


@router.get("", response_model=s.Page[s.ConfirmationOut], responses=responses(401, 403, 422, 503))
async def list_confirmations(
    read: FreshViewer,
    status: ConfirmationStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> s.Page[s.ConfirmationOut]:
    """Confirmations, oldest request first, with hazard, action, parameters, deadline and the
    time left to answer."""
    return await read(lambda: read.api.reads.confirmations(status, limit, cursor))


@router.get(
    "/{confirmation_id}",
    response_model=s.ConfirmationOut,
    responses=responses(401, 403, 404, 422, 503),
)
async def get_confirmation(read: FreshViewer, confirmation_id: UUID) -> s.ConfirmationOut:
    """One confirmation."""
    return await read(lambda: read.api.reads.confirmation(confirmation_id))


@router.post("/{confirmation_id}/grant", response_model=s.GrantAccepted, responses=ANSWER)
async def grant_confirmation(confirmation_id: UUID, call: OperatorCall) -> Response:
    """Grant: the executor then performs the action, once. A high hazard needs the approver
    role. Granting again answers already_granted and executes nothing; after the deadline, 410.
    The answer says whether an executor is running to perform it now."""
    return await call.respond(lambda: _granted(call, confirmation_id))


def _granted(call: Call, confirmation_id: UUID) -> Produced:
    produced = grant(call, confirmation_id)
    statuses = call.api.parts.statuses
    running = statuses.executor_running()
    model = s.GrantAccepted(
        **produced.model.model_dump(),
        execution="queued" if running is not None else "unknown",
        executor_running=running,
        detail=statuses.no_executor if running is False else None,
    )
    return Produced(model, produced.replayed)


@router.post("/{confirmation_id}/deny", response_model=s.CommandAccepted, responses=ANSWER)
async def deny_confirmation(confirmation_id: UUID, body: s.Denial, call: OperatorCall) -> Response:
    """Deny: the action will never run."""
    cmd = m.DenyConfirmation(confirmation_id=confirmation_id, reason=body.reason)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.deny_confirmation(cmd, call.invocation)))


@router.delete("/{confirmation_id}", response_model=s.CommandAccepted, responses=ANSWER)
async def cancel_confirmation(
    confirmation_id: UUID,
    call: OperatorCall,
    reason: Annotated[
        str, Query(min_length=1, max_length=2_000, pattern=r"^[^\x00-\x1f]+$")
    ] = "cancelled",
) -> Response:
    """Cancel a pending confirmation (nobody needs the action any more)."""
    cmd = m.CancelConfirmation(confirmation_id=confirmation_id, reason=reason)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.cancel_confirmation(cmd, call.invocation)))
