"""A goal someone asked the agent to achieve, and the decisions the agent recorded for it."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import MAX_NAME, JanusAggregate, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 5
# Layout characters a person types; every other control character in a goal is refused, since
# the text goes verbatim into model prompts and terminals.
ALLOWED_CONTROLS = frozenset("\n\t\r\u200c\u200d")  # layout, and the joiners emoji need
MAX_ERROR = 2_000
MAX_RAW_OUTPUT = 200_000


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
    rationale: str = ""
    # The agent's step key and what the model run cost (empty for scripted decisions).
    step: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    context_position: int = 0
    runtime: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Question:
    """What the agent asked an operator (``ask_operator``), and the answer once given."""

    question_id: UUID
    decision_id: UUID
    question: str
    answer: str | None = None
    answered_by: str | None = None


@dataclass(frozen=True)
class DecisionReplay:
    """A recorded decision's prompt re-run through a model, and whether the answers agree."""

    decision_id: UUID
    model: str
    model_digest: str
    raw_output: str
    action: dict[str, Any] | None
    agrees: bool
    timings: dict[str, float]


class Goal(JanusAggregate):
    @classmethod
    def submit(
        cls, goal_id: UUID, text: str, submitted_by: str, priority: int, ctx: CommandContext
    ) -> Goal:
        require_goal_text(text)
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

    @classmethod
    def fork(
        cls,
        goal_id: UUID,
        original: Goal,
        at_position: int,
        forked_by: str,
        ctx: CommandContext,
    ) -> Goal:
        """A new goal that continues ``original`` as it stood at log position ``at_position``.

        The link is its own event, recorded in the same save as the submission, so every reader
        of the fork (audit, views, a later fork of the fork) sees where it came from.
        """
        if goal_id == original.id:
            raise InvalidValue("a fork needs an id of its own")
        if at_position < 1:
            raise InvalidValue("a fork point is a log position of 1 or more")
        goal = cls.submit(goal_id, original.text, forked_by, original.priority, ctx)
        goal._record(
            cls.Forked,
            ctx,
            original_id=original.id,
            original_version=original.version,
            at_position=at_position,
        )
        return goal

    class Forked(JanusAggregate.Event):
        original_id: UUID
        original_version: int
        at_position: int

        def apply(self, aggregate: Any) -> None:
            aggregate.forked_from = self.original_id
            aggregate.forked_at_position = self.at_position

    def __init__(self, text: str, submitted_by: str, priority: int) -> None:
        self.text = text
        self.submitted_by = submitted_by
        self.priority = priority
        self.status = GoalStatus.SUBMITTED
        self.plan: list[str] = []
        self.decisions: list[Decision] = []
        self.replays: list[DecisionReplay] = []
        self.outcome: str | None = None
        self.forked_from: UUID | None = None
        self.forked_at_position: int | None = None
        self.attempts: dict[int, int] = {}
        self.failed_attempts: dict[int, list[str]] = {}
        self.observations: dict[UUID, dict[str, Any]] = {}
        self.questions: dict[UUID, Question] = {}

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
        if decision.step and decision.step != self.next_step:
            raise InvalidTransition(
                f"goal {self.id} is at step {self.next_step}, not {decision.step}: "
                "a step has at most one decision"
            )
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
            rationale=decision.rationale,
            step=decision.step,
            usage=decision.usage,
            context_position=decision.context_position,
            runtime=decision.runtime,
        )

    class DecisionRecorded(JanusAggregate.Event):
        """Version 2 added ``rationale`` (the agent's own explanation, optional), the agent's
        step key, token usage, the log position its retrieved context was read at, and the
        runtime (library version, schema digest)."""

        class_version = 2
        decision_id: UUID
        model: str
        model_digest: str
        parameters: dict[str, Any]
        prompt: str
        context_ids: list[str]
        raw_output: str
        action: dict[str, Any]
        timings: dict[str, float]
        rationale: str
        step: int
        usage: dict[str, int]
        context_position: int
        runtime: dict[str, str]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(rationale="", step=0, usage={}, context_position=0, runtime={})

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
                    rationale=self.rationale,
                    step=self.step,
                    usage=self.usage,
                    context_position=self.context_position,
                    runtime=self.runtime,
                )
            )

    def record_decision_replay(self, replay: DecisionReplay, ctx: CommandContext) -> None:
        """Allowed on a finished goal too: re-running its decisions is how it gets debugged."""
        if not self.has_decision(replay.decision_id):
            raise InvalidValue(f"goal {self.id} has no decision {replay.decision_id}")
        require_text("model", replay.model, limit=MAX_NAME)
        self._record(
            self.DecisionReplayed,
            ctx,
            decision_id=replay.decision_id,
            model=replay.model,
            model_digest=replay.model_digest,
            raw_output=replay.raw_output,
            action=replay.action,
            agrees=replay.agrees,
            timings=replay.timings,
        )

    class DecisionReplayed(JanusAggregate.Event):
        decision_id: UUID
        model: str
        model_digest: str
        raw_output: str
        action: dict[str, Any] | None
        agrees: bool
        timings: dict[str, float]

        def apply(self, aggregate: Any) -> None:
            aggregate.replays.append(
                DecisionReplay(
                    decision_id=self.decision_id,
                    model=self.model,
                    model_digest=self.model_digest,
                    raw_output=self.raw_output,
                    action=self.action,
                    agrees=self.agrees,
                    timings=self.timings,
                )
            )

    def has_replay(self, decision_id: UUID, model_digest: str, raw_output: str) -> bool:
        """The same model already gave this same answer to this decision."""
        return any(
            (r.decision_id, r.model_digest, r.raw_output) == (decision_id, model_digest, raw_output)
            for r in self.replays
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

    # -- the agent's steps -----------------------------------------------------------------------

    @property
    def next_step(self) -> int:
        """The step the agent asks about next: one decision per step, numbered from 1."""
        return len(self.decisions) + 1

    @property
    def last_decision(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    def start_step(self, step: int, ctx: CommandContext) -> int:
        """Recorded before the model is asked, so an attempt abandoned by a crash stays visible.

        Returns the attempt number (1 for the first ask of this step).
        """
        self._require_open()
        if step != self.next_step:
            raise InvalidTransition(f"goal {self.id} is at step {self.next_step}, not {step}")
        attempt = self.attempts.get(step, 0) + 1
        self._record(self.StepStarted, ctx, step=step, attempt=attempt)
        return attempt

    class StepStarted(JanusAggregate.Event):
        step: int
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.attempts[self.step] = self.attempt

    def fail_attempt(
        self, step: int, attempt: int, kind: str, error: str, raw_output: str, ctx: CommandContext
    ) -> None:
        """An ask that produced no usable decision: bad output, a timeout, a model error."""
        self._require_open()
        if self.attempts.get(step) != attempt:
            raise InvalidTransition(f"step {step} attempt {attempt} is not the current attempt")
        self._record(
            self.AttemptFailed,
            ctx,
            step=step,
            attempt=attempt,
            kind=require_text("kind", kind, limit=MAX_NAME),
            error=require_text("error", error[:MAX_ERROR]),
            raw_output=raw_output[:MAX_RAW_OUTPUT],
        )

    class AttemptFailed(JanusAggregate.Event):
        step: int
        attempt: int
        kind: str
        error: str
        raw_output: str

        def apply(self, aggregate: Any) -> None:
            aggregate.failed_attempts.setdefault(self.step, []).append(self.error)

    def record_observation(
        self, decision_id: UUID, tool: str, result: dict[str, Any], ctx: CommandContext
    ) -> bool:
        """What a read-only tool returned for a decision; recorded once, so replay needs no tool."""
        if decision_id in self.observations:
            return False
        self._require_open()
        if not self.has_decision(decision_id):
            raise InvalidValue(f"goal {self.id} has no decision {decision_id}")
        self._record(
            self.ObservationRecorded,
            ctx,
            decision_id=decision_id,
            tool=require_text("tool", tool, limit=MAX_NAME),
            result=result,
        )
        return True

    class ObservationRecorded(JanusAggregate.Event):
        decision_id: UUID
        tool: str
        result: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.observations[self.decision_id] = dict(self.result)

    def ask_operator(
        self, question_id: UUID, decision_id: UUID, question: str, ctx: CommandContext
    ) -> bool:
        if question_id in self.questions:
            return False
        self._require_open()
        if not self.has_decision(decision_id):
            raise InvalidValue(f"goal {self.id} has no decision {decision_id}")
        self._record(
            self.QuestionAsked,
            ctx,
            question_id=question_id,
            decision_id=decision_id,
            question=require_text("question", question),
        )
        return True

    class QuestionAsked(JanusAggregate.Event):
        question_id: UUID
        decision_id: UUID
        question: str

        def apply(self, aggregate: Any) -> None:
            aggregate.questions[self.question_id] = Question(
                self.question_id, self.decision_id, self.question
            )

    def answer_question(
        self, question_id: UUID, answer: str, answered_by: str, ctx: CommandContext
    ) -> bool:
        """The operator's answer; a repeat of the same answer records nothing."""
        asked = self.questions.get(question_id)
        if asked is None:
            raise InvalidValue(f"goal {self.id} has no question {question_id}")
        if asked.answer is not None:
            if asked.answer == answer:
                return False
            raise InvalidTransition(f"question {question_id} is already answered")
        self._require_open()
        self._record(
            self.QuestionAnswered,
            ctx,
            question_id=question_id,
            answer=require_text("answer", answer),
            answered_by=require_text("answered_by", answered_by, limit=MAX_NAME),
        )
        return True

    class QuestionAnswered(JanusAggregate.Event):
        question_id: UUID
        answer: str
        answered_by: str

        def apply(self, aggregate: Any) -> None:
            asked = aggregate.questions[self.question_id]
            aggregate.questions[self.question_id] = Question(
                asked.question_id, asked.decision_id, asked.question, self.answer, self.answered_by
            )

    def open_question(self) -> Question | None:
        return next((q for q in self.questions.values() if q.answer is None), None)


def require_goal_text(text: str) -> str:
    """A goal's text: not blank, bounded, and free of control characters other than layout."""
    require_text("text", text)
    for index, char in enumerate(text):
        if char not in ALLOWED_CONTROLS and unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise InvalidValue(
                f"text contains a control character (U+{ord(char):04X}) at index {index}"
            )
    return text
