"""Commands the agent runtime (and the operator answering it) records on a goal.

Each is load, one domain method, save, through the same runner as every other command, so the
agent's facts get provenance, conflict retries and one atomic save. Decision ids derive from
(goal, step): two writers racing on one step collide, and only one decision is ever recorded.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.invocation import CommandResult, Invocation
from commands.models import Action, Command, Name, Text
from commands.runner import CommandRunner, ContextFactory, Decided
from domain.base import derived_id
from domain.errors import InvalidValue
from domain.goal import Decision, Goal


def decision_id_for(goal_id: UUID, step: int) -> UUID:
    return derived_id("agent-decision", goal_id, step)


def question_id_for(decision_id: UUID) -> UUID:
    return derived_id("agent-question", decision_id)


class StartStep(Command):
    goal_id: UUID
    step: int = Field(ge=1)


class RecordStepDecision(Command):
    goal_id: UUID
    step: int = Field(ge=1)
    model: Name
    model_digest: str = Field(max_length=200)
    parameters: dict[str, Any]
    prompt: str = Field(max_length=200_000)
    context_ids: list[str] = Field(max_length=1_000)
    context_position: int = Field(ge=0)
    raw_output: str = Field(max_length=200_000)
    action: Action
    timings: dict[str, float]
    usage: dict[str, int]
    runtime: dict[str, str]


class FailAttempt(Command):
    goal_id: UUID
    step: int = Field(ge=1)
    attempt: int = Field(ge=1)
    kind: Name
    error: str = Field(min_length=1, max_length=2_000)
    raw_output: str = Field(default="", max_length=200_000)


class RecordObservation(Command):
    goal_id: UUID
    decision_id: UUID
    tool: Name
    result: dict[str, Any]


class AskOperator(Command):
    goal_id: UUID
    decision_id: UUID
    question: Text


class AnswerQuestion(Command):
    goal_id: UUID
    answer: Text
    question_id: UUID | None = None  # the goal's open question when not given


class AgentCommands:
    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    def _goal(self, goal_id: UUID) -> Goal:
        goal: Goal = self.runner.load(Goal, goal_id)
        return goal

    def start_step(self, cmd: StartStep, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            goal.start_step(cmd.step, ctx(str(goal.id)))
            return Decided(goal.id, f"attempt {goal.attempts[cmd.step]}", (goal,))

        return self.runner.run(cmd, inv, decide)

    def record_step_decision(self, cmd: RecordStepDecision, inv: Invocation) -> CommandResult:
        decision_id = decision_id_for(cmd.goal_id, cmd.step)

        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            if goal.has_decision(decision_id):
                return Decided(decision_id, "already_recorded")
            decision = Decision(
                decision_id=decision_id,
                model=cmd.model,
                model_digest=cmd.model_digest,
                parameters=dict(cmd.parameters),
                prompt=cmd.prompt,
                context_ids=list(cmd.context_ids),
                raw_output=cmd.raw_output,
                action=cmd.action.model_dump(mode="json"),
                timings=dict(cmd.timings),
                step=cmd.step,
                usage=dict(cmd.usage),
                context_position=cmd.context_position,
                runtime=dict(cmd.runtime),
            )
            goal.record_decision(decision, ctx(str(goal.id)))
            return Decided(decision_id, "recorded", (goal,))

        return self.runner.run(cmd, inv, decide)

    def fail_attempt(self, cmd: FailAttempt, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            goal.fail_attempt(
                cmd.step, cmd.attempt, cmd.kind, cmd.error, cmd.raw_output, ctx(str(goal.id))
            )
            return Decided(goal.id, "attempt_failed", (goal,))

        return self.runner.run(cmd, inv, decide)

    def record_observation(self, cmd: RecordObservation, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            fresh = goal.record_observation(
                cmd.decision_id, cmd.tool, cmd.result, ctx(str(goal.id))
            )
            return Decided(goal.id, "observed" if fresh else "already_observed", (goal,))

        return self.runner.run(cmd, inv, decide)

    def ask_operator(self, cmd: AskOperator, inv: Invocation) -> CommandResult:
        question_id = question_id_for(cmd.decision_id)

        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            fresh = goal.ask_operator(question_id, cmd.decision_id, cmd.question, ctx(str(goal.id)))
            return Decided(question_id, "asked" if fresh else "already_asked", (goal,))

        return self.runner.run(cmd, inv, decide)

    def answer_question(self, cmd: AnswerQuestion, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal = self._goal(cmd.goal_id)
            question_id = cmd.question_id
            if question_id is None:
                question_id = _question_to_answer(goal, cmd.answer)
            fresh = goal.answer_question(question_id, cmd.answer, str(inv.actor), ctx(str(goal.id)))
            return Decided(question_id, "answered" if fresh else "already_answered", (goal,))

        return self.runner.run(cmd, inv, decide)


def _question_to_answer(goal: Goal, answer: str) -> UUID:
    """The open question; or, for a repeated answer (a retry), the one it already answered."""
    open_question = goal.open_question()
    if open_question is not None:
        return open_question.question_id
    last = list(goal.questions.values())[-1] if goal.questions else None
    if last is not None and last.answer == answer:
        return last.question_id
    raise InvalidValue(f"goal {goal.id} has no open question")
