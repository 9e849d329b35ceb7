"""Where a goal stands for the agent, derived from its events and those of its actions.

Nothing here is held in memory between steps: after any crash the agent reads the goal, the
confirmation and effect each decision led to, and finds the same answer. A decision counts as
acted on exactly when its follow-up fact exists (a confirmation with the derived id, an
observation, a question, a completed goal), so acting twice finds the first act and adds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from commands.agent_tools import ToolCatalogue, ToolKind
from domain.base import derived_id
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.goal import Decision, Goal
from event_store.application import JanusApplication


def confirmation_id_for(decision_id: UUID) -> UUID:
    """The one confirmation an agent decision can lead to."""
    return derived_id("agent-confirmation", decision_id)


class Phase(StrEnum):
    DONE = "done"  # the goal is finished, failed or cancelled
    NEEDS_STEP = "needs_step"  # ask the model for the next decision
    ACT = "act"  # the last decision is recorded but not acted on yet
    WAITING = "waiting"  # on a person or a device


@dataclass(frozen=True)
class Standing:
    phase: Phase
    outcome: str | None = None  # what the last decision led to, for the next prompt


def load_aggregate(app: JanusApplication, aggregate_id: UUID) -> Any:
    """The aggregate, or None if it was never created (one read, not an exists and a get)."""
    try:
        return app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        return None


def device_outcome(app: JanusApplication, decision: Decision) -> Standing:
    confirmation: Confirmation | None = load_aggregate(
        app, confirmation_id_for(decision.decision_id)
    )
    if confirmation is None:
        return Standing(Phase.ACT)
    if confirmation.status is ConfirmationStatus.PENDING:
        return Standing(Phase.WAITING)
    if confirmation.status is not ConfirmationStatus.GRANTED:
        reason = f": {confirmation.reason}" if confirmation.reason else ""
        return Standing(Phase.NEEDS_STEP, f"confirmation {confirmation.status.value}{reason}")
    effect: Effect | None = load_aggregate(app, effect_id_for(confirmation.id))
    if effect is None or effect.status is EffectStatus.STARTED:
        return Standing(Phase.WAITING)
    if effect.status is EffectStatus.SUCCEEDED:
        return Standing(Phase.NEEDS_STEP, f"succeeded {json.dumps(effect.result)}")
    if effect.status is EffectStatus.RECONCILED:
        happened = "happened" if effect.happened else "did not happen"
        return Standing(Phase.NEEDS_STEP, f"effect reconciled by an operator: it {happened}")
    return Standing(Phase.NEEDS_STEP, f"effect {effect.status.value}: {effect.error}")


def standing(app: JanusApplication, goal: Goal, catalogue: ToolCatalogue) -> Standing:
    if goal.status.is_terminal:
        return Standing(Phase.DONE)
    decision = goal.last_decision
    if decision is None:
        return Standing(Phase.NEEDS_STEP)
    return decision_standing(app, goal, decision, catalogue)


def decision_standing(
    app: JanusApplication, goal: Goal, decision: Decision, catalogue: ToolCatalogue
) -> Standing:
    """Whether this decision was acted on, and if it has settled, what it led to."""
    tool = catalogue.tools.get(str(decision.action.get("name")))
    if tool is None or tool.kind is ToolKind.FINISH:
        return Standing(Phase.ACT)
    if tool.kind is ToolKind.READ:
        seen = goal.observations.get(decision.decision_id)
        if seen is None:
            return Standing(Phase.ACT)
        return Standing(Phase.NEEDS_STEP, f"found {json.dumps(seen.get('items', seen))}")
    if tool.kind is ToolKind.ASK:
        asked = next(
            (q for q in goal.questions.values() if q.decision_id == decision.decision_id), None
        )
        if asked is None:
            return Standing(Phase.ACT)
        if asked.answer is None:
            return Standing(Phase.WAITING)
        return Standing(Phase.NEEDS_STEP, f"the operator answered: {asked.answer}")
    return device_outcome(app, decision)


Turn = tuple[str, str]  # (role, text), role one of "human", "ai"


def conversation(
    app: JanusApplication,
    goal: Goal,
    catalogue: ToolCatalogue,
    knowledge: list[str],
    error: str | None,
) -> list[Turn]:
    """The goal as a chat: the goal, then each decision and what it led to; a rejection last."""
    opening = f"Goal: {goal.text}"
    if knowledge:
        opening += "\nKnown from earlier goals:\n" + "\n".join(f"- {k}" for k in knowledge)
    turns: list[Turn] = [("human", opening)]
    for decision in goal.decisions:
        turns.append(("ai", json.dumps(decision.action)))
        outcome = decision_standing(app, goal, decision, catalogue).outcome
        turns.append(("human", f"Result: {outcome or 'unknown'}"))
    if error:
        role, text = turns[-1]
        rejected = f"Your previous answer was rejected ({error}). Answer with one tool call."
        turns[-1] = (role, f"{text}\n{rejected}")
    return turns


def tokens_used(goal: Goal) -> int:
    return sum(sum(d.usage.values()) for d in goal.decisions)
