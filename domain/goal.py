"""A goal someone asked the agent to achieve, and the decisions the agent recorded for it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import MAX_NAME, JanusAggregate, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 5


class GoalStatus(StrEnum):
    SUBMITTED = "submitted"
    PLANNED = "planned"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (GoalStatus.COMPLETED, GoalStatus.FAILED, GoalStatus.CANCELLED)


@dataclass(frozen=True)
class Decision:
    """What the agent decided and everything needed to explain or re-run it later."""

    decision_id: UUID
    model: str
    model_digest: str
    parameters: dict[str, Any]
    prompt: str
    context_ids: list[str]
    raw_output: str
    action: dict[str, Any]
    timings: dict[str, float]


class Goal(JanusAggregate):
    @classmethod
    def submit(
        cls, goal_id: UUID, text: str, submitted_by: str, priority: int, ctx: CommandContext
    ) -> Goal:
        require_text("text", text)
        require_text("submitted_by", submitted_by, limit=MAX_NAME)
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidValue(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
        return cls._open(
            cls.Submitted, ctx, id=goal_id, text=text, submitted_by=submitted_by, priority=priority
        )

    class Submitted(JanusAggregate.Created):
        """Version 2 added ``priority``; goals submitted before that ran at the default."""

        class_version = 2
        text: str
        submitted_by: str
        priority: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["priority"] = DEFAULT_PRIORITY

    def __init__(self, text: str, submitted_by: str, priority: int) -> None:
        self.text = text
        self.submitted_by = submitted_by
        self.priority = priority
        self.status = GoalStatus.SUBMITTED
        self.plan: list[str] = []
        self.decisions: list[Decision] = []
        self.outcome: str | None = None

    def _require_open(self) -> None:
        if self.status.is_terminal:
            raise InvalidTransition(f"goal {self.id} is already {self.status.value}")

    def record_plan(self, steps: list[str], ctx: CommandContext) -> None:
        self._require_open()
        if not steps:
            raise InvalidValue("a plan needs at least one step")
        for step in steps:
            require_text("step", step)
        self._record(self.Planned, ctx, steps=list(steps))

    class Planned(JanusAggregate.Event):
        steps: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.plan = list(self.steps)
            aggregate.status = GoalStatus.PLANNED

    def record_decision(self, decision: Decision, ctx: CommandContext) -> None:
        self._require_open()
        require_text("model", decision.model, limit=MAX_NAME)
        if not decision.action.get("name"):
            raise InvalidValue("a decision's parsed action needs a name")
        if any(d.decision_id == decision.decision_id for d in self.decisions):
            raise InvalidTransition(f"decision {decision.decision_id} is already recorded")
        self._record(
            self.DecisionRecorded,
            ctx,
            decision_id=decision.decision_id,
            model=decision.model,
            model_digest=decision.model_digest,
            parameters=decision.parameters,
            prompt=decision.prompt,
            context_ids=decision.context_ids,
            raw_output=decision.raw_output,
            action=decision.action,
            timings=decision.timings,
        )

    class DecisionRecorded(JanusAggregate.Event):
        decision_id: UUID
        model: str
        model_digest: str
        parameters: dict[str, Any]
        prompt: str
        context_ids: list[str]
        raw_output: str
        action: dict[str, Any]
        timings: dict[str, float]

        def apply(self, aggregate: Any) -> None:
            aggregate.decisions.append(
                Decision(
                    decision_id=self.decision_id,
                    model=self.model,
                    model_digest=self.model_digest,
                    parameters=self.parameters,
                    prompt=self.prompt,
                    context_ids=self.context_ids,
                    raw_output=self.raw_output,
                    action=self.action,
                    timings=self.timings,
                )
            )

    def has_decision(self, decision_id: UUID) -> bool:
        return any(d.decision_id == decision_id for d in self.decisions)

    def complete(self, summary: str, ctx: CommandContext) -> None:
        self._require_open()
        self._record(self.Completed, ctx, summary=require_text("summary", summary))

    class Completed(JanusAggregate.Event):
        summary: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = GoalStatus.COMPLETED
            aggregate.outcome = self.summary

    def fail(self, reason: str, ctx: CommandContext) -> None:
        self._require_open()
        self._record(self.Failed, ctx, reason=require_text("reason", reason))

    class Failed(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = GoalStatus.FAILED
            aggregate.outcome = self.reason

    def cancel(self, reason: str, ctx: CommandContext) -> None:
        self._require_open()
        self._record(self.Cancelled, ctx, reason=require_text("reason", reason))

    class Cancelled(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = GoalStatus.CANCELLED
            aggregate.outcome = self.reason
