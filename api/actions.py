"""The few requests that are more than one command call: each rule lives here, not in a route."""

from __future__ import annotations

from uuid import UUID

from api import schemas as s
from api.auth import forbidden
from api.deps import Call, Produced
from commands import models as m
from commands.invocation import CommandResult
from commands.keys import RevokeApiKey
from domain.api_key import Role
from domain.confirmation import Confirmation, HazardClass


def accepted(result: CommandResult) -> Produced:
    model = s.CommandAccepted(
        id=result.aggregate_id, outcome=result.outcome, position=result.position
    )
    return Produced(model, result.replayed)


def grant(call: Call, confirmation_id: UUID) -> Produced:
    """Operators may grant low and medium hazards; a high hazard needs an approver."""
    commands = call.api.parts.commands
    confirmation: Confirmation = commands.runner.load(Confirmation, confirmation_id)
    if confirmation.hazard is HazardClass.HIGH and not call.principal.role.allows(Role.APPROVER):
        raise forbidden(
            call.principal, Role.APPROVER, call.api.denials, "granting a high-hazard action"
        )
    cmd = m.GrantConfirmation(confirmation_id=confirmation_id)
    return accepted(commands.grant_confirmation(cmd, call.invocation))


def run_now(call: Call, job_id: UUID) -> Produced:
    """Fire a job now through the scheduler's public command (see ``Scheduler.run_now``)."""
    api = call.api
    fire = api.scheduler().run_now(job_id, call.invocation)
    fired = s.ManualFire(
        fire_id=fire.id,
        job_id=fire.job_id,
        scheduled_for=fire.scheduled_for,
        manual=True,
        status=fire.status,
        attempt=fire.attempt,
        error=fire.error,
        confirmation_id=fire.confirmation_id,
        position=api.parts.reader.head(),
    )
    return Produced(fired)


def revoke_key(call: Call, key_id: UUID) -> Produced:
    result = call.api.parts.keys.revoke_key(RevokeApiKey(key_id=key_id), call.invocation)
    call.api.verifier.forget(key_id)
    return accepted(result)
