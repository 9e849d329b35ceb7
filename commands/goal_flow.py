"""A goal's steps that take more than one command: an agent's decision together with the action
it asks for, and a cancellation that withdraws the goal's pending confirmations.

The API and the CLI both call these, so the rules live in one place. Each step is retry-safe:
the confirmation id is derived from the decision id and every inner command gets its own
idempotency key derived from the caller's, so a retry after a crash between two commands
finishes the work instead of doubling it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from uuid import UUID, uuid5

from commands import models as m
from commands.invocation import CommandResult, Invocation
from commands.service import CommandService
from domain.confirmation import HazardClass
from domain.errors import InvalidTransition
from domain.goal import Goal, GoalStatus

CONFIRMATION_NAMESPACE = UUID("5d0b7c1e-3f0a-4e8b-9a51-2c0f3f1f6a10")


def confirmation_for(decision_id: UUID) -> UUID:
    """The one confirmation a decision's action can ever request."""
    return uuid5(CONFIRMATION_NAMESPACE, f"decision:{decision_id}")


def _part(inv: Invocation, name: str) -> Invocation:
    """An inner command's invocation: its own key (commands may not share one), same actor."""
    if inv.idempotency_key is None:
        return inv
    return replace(inv, idempotency_key=f"{inv.idempotency_key}/{name}")


@dataclass(frozen=True)
class DecisionOutcome:
    decision: CommandResult
    confirmation: CommandResult
    hazard: HazardClass

    @property
    def position(self) -> int:
        return max(self.decision.position, self.confirmation.position)

    @property
    def replayed(self) -> bool:
        return self.decision.replayed and self.confirmation.replayed


def request_action(
    commands: CommandService,
    goal_id: UUID,
    decision_id: UUID,
    action: m.Action,
    inv: Invocation,
    hazard: HazardClass | None = None,
    ttl_seconds: int | None = None,
    ask_a_person: bool = False,
) -> tuple[CommandResult, HazardClass]:
    """The one gate a decided action goes through. The catalogue decides its hazard (``hazard``
    may only raise it): a low hazard is granted by policy, anything else waits for a person;
    ``ask_a_person`` waits for a person whatever the hazard."""
    chosen = commands.gate.check(action.name, dict(action.parameters), hazard)
    confirmation_id = confirmation_for(decision_id)
    part = _part(inv, "action")
    if ask_a_person:
        asked = m.RequestConfirmation(
            goal_id=goal_id,
            decision_id=decision_id,
            action=action,
            hazard=chosen,
            ttl_seconds=ttl_seconds,
            confirmation_id=confirmation_id,
        )
        return commands.request_confirmation(asked, part), chosen
    request = m.RequestAction(
        goal_id=goal_id,
        decision_id=decision_id,
        action=action,
        hazard=hazard,
        ttl_seconds=ttl_seconds,
        confirmation_id=confirmation_id,
    )
    return commands.request_action(request, part), chosen


def decide(
    commands: CommandService,
    cmd: m.RecordDecision,
    inv: Invocation,
    hazard: HazardClass | None = None,
    ttl_seconds: int | None = None,
    ask_a_person: bool = False,
) -> DecisionOutcome:
    """Record the decision, then ask for its action through the gate. The gate's refusal (an
    unknown action, bad parameters) comes first, so a refused decision records nothing."""
    commands.gate.check(cmd.action.name, dict(cmd.action.parameters), hazard)
    recorded = commands.record_decision(cmd, _part(inv, "decision"))
    requested, chosen = request_action(
        commands,
        cmd.goal_id,
        recorded.aggregate_id,
        cmd.action,
        inv,
        hazard,
        ttl_seconds,
        ask_a_person,
    )
    return DecisionOutcome(recorded, requested, chosen)


@dataclass(frozen=True)
class CancelOutcome:
    goal: CommandResult
    withdrawn: tuple[CommandResult, ...] = ()

    @property
    def position(self) -> int:
        return max([self.goal.position, *(r.position for r in self.withdrawn)])

    @property
    def withdrawn_ids(self) -> list[UUID]:
        return [r.aggregate_id for r in self.withdrawn]


PendingConfirmations = Callable[[UUID, int], Iterable[UUID]]


def cancel_goal(
    commands: CommandService,
    cmd: m.CancelGoal,
    inv: Invocation,
    pending: PendingConfirmations,
) -> CancelOutcome:
    """Cancel the goal, then every confirmation of it still pending.

    ``pending(goal_id, position)`` lists them once the views hold ``position``. Cancelling an
    already cancelled goal still withdraws what is left pending (a crash may have stopped the
    first call half way), then reports the goal's state as the conflict it is.
    """
    try:
        cancelled = commands.cancel_goal(cmd, _part(inv, "goal"))
    except InvalidTransition:
        goal: Goal = commands.runner.load(Goal, cmd.goal_id)
        if goal.status is GoalStatus.CANCELLED:
            _withdraw(commands, cmd, inv, pending(cmd.goal_id, commands.runner.app.head()))
        raise
    results = _withdraw(commands, cmd, inv, pending(cmd.goal_id, cancelled.position))
    return CancelOutcome(cancelled, tuple(results))


def _withdraw(
    commands: CommandService, cmd: m.CancelGoal, inv: Invocation, confirmation_ids: Iterable[UUID]
) -> list[CommandResult]:
    results = []
    for confirmation_id in confirmation_ids:
        withdraw = m.CancelConfirmation(
            confirmation_id=confirmation_id, reason=f"goal cancelled: {cmd.reason}"[:2_000]
        )
        try:
            result = commands.cancel_confirmation(withdraw, _part(inv, f"cancel:{confirmation_id}"))
        except InvalidTransition:
            continue  # answered (granted, denied, expired) meanwhile: nothing left to withdraw
        if result.outcome == "cancelled":
            results.append(result)
    return results
