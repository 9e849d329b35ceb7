"""A told story (goal, decisions, confirmation, effect) to replay, search and travel through."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from adapters.llm import RulesDecisionModel, parse_action
from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.confirmation import Confirmation
from domain.effect import Effect, effect_id_for
from domain.goal import Goal
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication

ALICE = Actor(ActorKind.USER, "alice")


BOB = Actor(ActorKind.USER, "bob")


AGENT = Actor(ActorKind.AGENT, "planner")


PARAMETERS = {"seed": 7, "temperature": 0.0, "max_tokens": 64}


@dataclass(frozen=True)
class Told:
    goal_id: UUID
    decisions: tuple[UUID, UUID]
    denied: UUID
    granted: UUID
    effect: UUID
    job: UUID
    order: UUID


def decide(janus: Janus, goal_id: UUID, prompt: str, causation: str | None = None) -> UUID:
    """The agent's turn: the deterministic model answers, the decision is recorded."""
    model = RulesDecisionModel()
    raw = model.generate(prompt, PARAMETERS)
    action = parse_action(raw)
    assert action is not None
    cmd = m.RecordDecision(
        goal_id=goal_id,
        model=model.name,
        model_digest=model.digest,
        parameters=PARAMETERS,
        prompt=prompt,
        context_ids=["doc-house-rules", "doc-plumber-visit"],
        raw_output=raw,
        action=m.Action.model_validate(action),
        timings={"generate_ms": 12.5},
    )
    result = janus.commands.record_decision(cmd, Invocation(AGENT, causation_id=causation))
    return result.aggregate_id


def request(janus: Janus, goal_id: UUID, decision_id: UUID, hazard: str) -> UUID:
    goal: Goal = janus.app.repository.get(goal_id)
    decision = next(d for d in goal.decisions if d.decision_id == decision_id)
    cmd = m.RequestConfirmation.model_validate(
        {
            "goal_id": str(goal_id),
            "decision_id": str(decision_id),
            "action": decision.action,
            "hazard": hazard,
            "ttl_seconds": 600,
        }
    )
    return janus.commands.request_confirmation(cmd, Invocation(AGENT)).aggregate_id


def tell_story(janus: Janus) -> Told:
    commands = janus.commands
    goal_id = commands.submit_goal(
        m.SubmitGoal(text="let the plumber in at noon and tell them where to go", priority=7),
        Invocation(ALICE),
    ).aggregate_id
    first = decide(janus, goal_id, "Goal: let the plumber in. Next step? unlock the front door")
    denied = request(janus, goal_id, first, "high")
    commands.deny_confirmation(
        m.DenyConfirmation(confirmation_id=denied, reason="not before the plumber calls"),
        Invocation(BOB),
    )
    second = decide(janus, goal_id, "Goal: let the plumber in. Next step? notify the plumber")
    granted = request(janus, goal_id, second, "medium")
    commands.grant_confirmation(m.GrantConfirmation(confirmation_id=granted), Invocation(BOB))
    effect = effect_of_unknown_outcome(janus, granted)
    commands.reconcile_effect(
        m.ReconcileEffect(effect_id=effect, happened=True, note="the plumber got the text"),
        Invocation(ALICE),
    )
    cause = _decision_event_id(janus, goal_id, second)
    job = commands.schedule_job(
        m.ScheduleJob.model_validate(
            {
                "name": "remind the plumber",
                "trigger": {"kind": "interval", "seconds": 3600},
                "action": {"name": "notify", "parameters": {"to": "plumber"}},
            }
        ),
        Invocation(AGENT, causation_id=cause),
    ).aggregate_id
    order = commands.propose_order(
        m.ProposeOrder(symbol="WASHR", side="buy", quantity=Decimal(2), goal_id=goal_id),
        Invocation(AGENT),
    ).aggregate_id
    return Told(goal_id, (first, second), denied, granted, effect, job, order)


def effect_of_unknown_outcome(janus: Janus, confirmation_id: UUID) -> UUID:
    """The executor recorded Started, died, and on recovery the notifier could not tell."""
    confirmation: Confirmation = janus.app.repository.get(confirmation_id)
    granted = janus.app.events.get(confirmation_id)
    grant_event_id = list(granted)[-1].meta.event_id
    ctx = CommandContext(
        command_id=f"executor:test:{confirmation_id}",
        correlation_id=str(confirmation.goal_id),
        causation_id=str(grant_event_id),
        actor=Actor.system("executor"),
        node_id=janus.settings.node_id,
    )
    started = Effect.start(
        confirmation.id, confirmation.goal_id, confirmation.action, confirmation.parameters, ctx
    )
    janus.app.save(started)
    janus.executor().run_once()
    effect: Effect = janus.app.repository.get(effect_id_for(confirmation_id))
    assert effect.status.value == "outcome_unknown"
    return effect.id


def _decision_event_id(janus: Janus, goal_id: UUID, decision_id: UUID) -> str:
    for event in janus.app.events.get(goal_id):
        if isinstance(event, Goal.DecisionRecorded) and event.decision_id == decision_id:
            return str(event.meta.event_id)
    raise AssertionError("decision not found")


def log_of(app: JanusApplication) -> list[tuple[str, Any, int, str, bytes]]:
    """Everything that makes two logs the same: event ids, aggregates, order, bodies."""
    rows: list[Notification] = []
    position = 0
    while page := app.recorder.select_notifications(position, 500, inclusive_of_start=False):
        rows += page
        position = page[-1].id
    out = []
    for n in rows:
        meta = json.loads(n.state)["meta"]["_data_"]
        out.append((meta["event_id"], str(n.originator_id), n.originator_version, n.topic, n.state))
    return out
