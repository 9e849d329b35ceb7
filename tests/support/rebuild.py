"""Workloads for rebuild/verify tests: goals with confirmations, and a poison event."""

from __future__ import annotations

from uuid import uuid4

from bootstrap.container import Janus
from commands import models as m
from domain.job import JobFire
from domain.meta import Actor, ActorKind, CommandContext
from tests.support.commands import AGENT, as_alice


def goal_with_confirmation(janus: Janus, text_: str = "unlock the front door") -> int:
    """A goal, a decision on it and a confirmation for it: three views, one story."""
    goal = janus.commands.submit_goal(m.SubmitGoal(text=text_), as_alice())
    action = m.Action(name="unlock_door", parameters={"door": "front"})
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            model="scripted",
            prompt="unlock?",
            raw_output='{"action": "unlock_door"}',
            action=action,
        ),
        AGENT,
    )
    requested = janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal.aggregate_id,
            decision_id=decision.aggregate_id,
            action=action,
            hazard="high",
            ttl_seconds=600,
        ),
        AGENT,
    )
    return requested.position


def poison(janus: Janus) -> int:
    """A fire's outcome whose fire was never recorded: the jobs view cannot place it."""
    ctx = CommandContext("test", "test", "test", Actor(ActorKind.SYSTEM, "test"), "local")
    fire = JobFire.fire(uuid4(), janus.clock.now(), False, ctx)
    fire.collect_events()  # the Fired event is never saved
    fire.succeed({}, ctx)
    recordings = janus.app.save(fire)
    return recordings[-1].notification.id
