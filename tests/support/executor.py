"""Granting actions and driving the executor by hand; reading what the world recorded."""

from __future__ import annotations

from uuid import UUID

from adapters.effects import (
    Ledger,
)
from bootstrap.container import Janus
from commands import models as m
from commands.executor import Executor
from commands.invocation import Invocation
from domain.actions import ActionSpec, HazardClass
from domain.effect import Effect, effect_id_for
from domain.meta import Actor, ActorKind, CommandContext
from tests.support.commands import as_alice, pending_confirmation

OPERATOR = Invocation(Actor(ActorKind.USER, "dana", role="approver"))


def grant(janus: Janus, action: str = "unlock_door") -> UUID:
    confirmation_id = pending_confirmation(janus)
    if action != "unlock_door":
        confirmation_id = _request(janus, action)
    janus.commands.grant_confirmation(
        m.GrantConfirmation(confirmation_id=confirmation_id), OPERATOR
    )
    return confirmation_id


def _request(janus: Janus, action: str) -> UUID:
    # The gate only asks about actions its catalogue knows; these tests bring their own adapters.
    if action not in janus.commands.gate.catalogue:
        janus.commands.gate.catalogue.register(ActionSpec(action, HazardClass.MEDIUM))
    goal = janus.commands.submit_goal(m.SubmitGoal(text=f"please {action}"), as_alice())
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            model="scripted",
            prompt="",
            raw_output="",
            action=m.Action(name=action),
        ),
        as_alice(),
    )
    return janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal.aggregate_id,
            decision_id=decision.aggregate_id,
            action=m.Action(name=action),
            hazard="medium",
        ),
        as_alice(),
    ).aggregate_id


def door_ledger(janus: Janus) -> Ledger:
    return Ledger(janus.settings.home / "world" / "door_lock.sqlite")


def effect_of(janus: Janus, confirmation_id: UUID) -> Effect:
    effect: Effect = janus.app.repository.get(effect_id_for(confirmation_id))
    return effect


def drain(executor: Executor) -> None:
    while executor.run_once():
        pass


def started_but_not_finished(janus: Janus, confirmation_id: UUID) -> None:
    """What the store holds when the executor died between Started and the outcome."""
    ctx = CommandContext("crash", "g", "crash", Actor(ActorKind.SYSTEM, "executor"), "test")
    effect = Effect.start(confirmation_id, confirmation_id, "unlock_door", {"door": "front"}, ctx)
    janus.app.save(effect)
