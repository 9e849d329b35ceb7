"""Effects: what granted actions did to the world, and the ones that need an operator."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from api import schemas as s
from api.actions import accepted
from api.deps import ApproverCall, Cursor, FreshViewer, Limit
from api.problems import responses
from commands import models as m
from domain.effect import EffectStatus

router = APIRouter(prefix="/v1/effects", tags=["effects"])


class Outcome(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RECONCILED = "reconciled"

    @property
    def status(self) -> EffectStatus:
        return EffectStatus.OUTCOME_UNKNOWN if self is Outcome.UNKNOWN else EffectStatus(self.value)


@router.get("", response_model=s.Page[s.EffectOut], responses=responses(401, 403, 422, 503))
async def list_effects(
    read: FreshViewer,
    outcome: Outcome | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> s.Page[s.EffectOut]:
    """Effects, oldest first. ?outcome=unknown lists those waiting for an operator."""
    status = outcome.status.value if outcome else None
    return await read(lambda: read.api.reads.effects(status, limit, cursor))


@router.post(
    "/{effect_id}/reconcile",
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def reconcile_effect(effect_id: UUID, body: s.Reconciliation, call: ApproverCall) -> Response:
    """Record an approver's word on an effect whose outcome nobody else could vouch for."""
    cmd = m.ReconcileEffect(effect_id=effect_id, happened=body.happened, note=body.note)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.reconcile_effect(cmd, call.invocation)))
