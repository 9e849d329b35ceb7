"""Who calls (Alice, an agent) and a confirmation waiting for a grant: the commonest setup."""

from __future__ import annotations

from uuid import UUID

from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind

ALICE = Actor(ActorKind.USER, "alice")


AGENT = Invocation(Actor(ActorKind.AGENT, "planner"))


def as_alice(key: str | None = None) -> Invocation:
    return Invocation(ALICE, idempotency_key=key)


def pending_confirmation(janus: Janus, ttl: int = 60) -> UUID:
    goal = janus.commands.submit_goal(m.SubmitGoal(text="unlock the front door"), as_alice())
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            model="scripted",
            prompt="unlock?",
            raw_output='{"action": "unlock_door"}',
            action=m.Action(name="unlock_door", parameters={"door": "front"}),
        ),
        AGENT,
    )
    requested = janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal.aggregate_id,
            decision_id=decision.aggregate_id,
            action=m.Action(name="unlock_door", parameters={"door": "front"}),
            hazard="high",
            ttl_seconds=ttl,
        ),
        AGENT,
    )
    return requested.aggregate_id
