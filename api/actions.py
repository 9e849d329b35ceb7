"""The few requests that are more than one command call: each rule lives here, not in a route."""

from __future__ import annotations

from uuid import UUID, uuid4

from adapters.timer import fire_time
from api import schemas as s
from api.auth import forbidden
from api.deps import Call, Produced
from commands import models as m
from commands.errors import ConcurrencyConflict
from commands.invocation import CommandResult
from commands.keys import RevokeApiKey
from domain.api_key import Role
from domain.confirmation import Confirmation, HazardClass
from domain.errors import InvalidTransition
from domain.meta import CommandContext


def accepted(result: CommandResult) -> Produced:
    model = s.CommandAccepted(
        id=result.aggregate_id, outcome=result.outcome, position=result.position
    )
    return Produced(model, result.replayed)


def grant(call: Call, confirmation_id: UUID) -> Produced:
    """Operators may grant low and medium hazards; a high hazard needs an approver."""
    commands = call.api.janus.commands
    confirmation: Confirmation = commands.runner.load(Confirmation, confirmation_id)
    if confirmation.hazard is HazardClass.HIGH and not call.principal.role.allows(Role.APPROVER):
        raise forbidden(
            call.principal, Role.APPROVER, call.api.denials, "granting a high-hazard action"
        )
    cmd = m.GrantConfirmation(confirmation_id=confirmation_id)
    return accepted(commands.grant_confirmation(cmd, call.invocation))


def run_now(call: Call, job_id: UUID) -> Produced:
    """Fire a job now, recorded as a manual fire through the scheduler's own fire path.

    The fire's events name the caller (key and role), not the scheduler.
    """
    api = call.api
    job = api.reads.job_row(job_id)
    if job.status == "removed":
        raise InvalidTransition(f"job {job_id} was removed")
    scheduler = api.scheduler()
    scheduled_for = fire_time(api.janus.clock.now())
    inv = call.invocation
    command_id = inv.idempotency_key or f"manual:{uuid4()}"
    ctx = CommandContext(
        command_id=command_id,
        correlation_id=str(job.id),
        causation_id=inv.causation_id or command_id,
        actor=inv.actor,
        node_id=scheduler.node_id,
        trace_context=dict(inv.trace_context),
    )
    # The fire asks the action gate like any other: a hazardous action waits for its grant.
    fire = scheduler.fire(job, scheduled_for, manual=True, ctx=ctx)
    if fire is None:
        raise ConcurrencyConflict(
            f"job {job_id} already has a fire at {scheduled_for.isoformat()}; try again"
        )
    fired = s.ManualFire(
        fire_id=fire.id,
        job_id=job.id,
        scheduled_for=fire.scheduled_for,
        manual=True,
        status=fire.status,
        attempt=fire.attempt,
        error=fire.error,
        confirmation_id=fire.confirmation_id,
        position=api.janus.app.head(),
    )
    return Produced(fired)


def revoke_key(call: Call, key_id: UUID) -> Produced:
    result = call.api.keys.revoke_key(RevokeApiKey(key_id=key_id), call.invocation)
    call.api.verifier.forget(key_id)
    return accepted(result)
