"""One goal, advanced step by step: ask the model, record the decision, then act on it.

The order is what makes crashes harmless. ``Goal.StepStarted`` is recorded before the model is
asked, so an attempt abandoned by a crash stays visible and the step is simply asked again.
``Goal.DecisionRecorded`` (id derived from goal and step) is saved before anything is done about
it, and a recorded decision is acted on, never re-asked. Every act is keyed by the decision, so
doing it again after a crash finds the first one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from adapters.agent_llm import ASSISTANT_START, ModelRunnable, build_prompt, render
from adapters.faults import crash_point
from adapters.llm import Completion, DecisionModel, ModelUnavailable, llama_cpp_version
from adapters.retrieval import Retrieved, Retriever
from adapters.telemetry import model_span
from commands import models as m
from commands.agent_commands import (
    AgentCommands,
    AskOperator,
    FailAttempt,
    RecordObservation,
    RecordStepDecision,
    StartStep,
)
from commands.agent_state import (
    Phase,
    Standing,
    confirmation_id_for,
    conversation,
    load_aggregate,
    standing,
)
from commands.agent_state import tokens_used as used
from commands.agent_tools import InvalidToolCall, Tool, ToolCatalogue, ToolKind
from commands.invocation import Invocation
from commands.service import CommandService
from domain.errors import AlreadyDecided, InvalidTransition
from domain.goal import Decision, Goal
from domain.meta import Actor, ActorKind
from event_store.application import JanusApplication

log = logging.getLogger(__name__)

MAX_ASKS = 2  # a step whose output fails twice fails the goal
MAX_ABANDONED = 3  # a step whose model call died this often fails the goal


@dataclass(frozen=True)
class AgentConfig:
    max_steps: int = 8
    token_budget: int = 20_000
    model_timeout_seconds: float = 120.0
    concurrency: int = 4
    seed: int = 42
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int = 96
    n_ctx: int = 2048

    def sampling(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "n_ctx": self.n_ctx,
        }


class ModelTimeout(Exception):
    pass


def schema_digest(schema: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


class GoalWorker:
    def __init__(
        self,
        app: JanusApplication,
        commands: CommandService,
        agent_commands: AgentCommands,
        model: DecisionModel,
        retriever: Retriever,
        catalogue: ToolCatalogue,
        config: AgentConfig,
        node_id: str,
        pending_confirmations: Callable[[UUID], list[UUID]],
        tracer: Any = None,
    ) -> None:
        self.app = app
        self.commands = commands
        self.agent_commands = agent_commands
        self.model = model
        self.retriever = retriever
        self.catalogue = catalogue
        self.config = config
        self.node_id = node_id
        self.pending_confirmations = pending_confirmations
        self.tracer = tracer
        self.template = build_prompt()
        self.tools_text = ", ".join(
            f"{t.name}({', '.join(t.parameters['properties'])})" for t in catalogue.tools.values()
        )
        self.schema = catalogue.json_schema()
        self.digest = schema_digest(self.schema)
        # The system turn and examples are the same in every prompt: the model may keep them
        # evaluated between calls (recorded, so a replay computes the prompt the same way).
        prefix = render(self.template, self.tools_text, [])
        prefix_chars = len(prefix) - len(ASSISTANT_START)
        self.parameters = {
            **config.sampling(),
            "prefix_chars": prefix_chars,
            "json_schema": self.schema,
        }
        self.actor = Actor(ActorKind.AGENT, "agent")
        # Model calls that outlive their timeout keep running here; they cannot be interrupted.
        self._calls = ThreadPoolExecutor(max(config.concurrency, 1), thread_name_prefix="model")
        self._goal_locks: dict[UUID, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock_for(self, goal_id: UUID) -> threading.Lock:
        with self._locks_lock:
            return self._goal_locks.setdefault(goal_id, threading.Lock())

    def forget_goals(self) -> None:
        """Drop the per-goal locks between batches, so they do not pile up over a long run."""
        with self._locks_lock:
            self._goal_locks.clear()

    def close(self) -> None:
        # A model call past its timeout cannot be interrupted; do not wait for it.
        self._calls.shutdown(wait=False, cancel_futures=True)

    def _inv(self, trace: dict[str, str]) -> Invocation:
        return Invocation(self.actor, trace_context=dict(trace))

    def load(self, goal_id: UUID) -> Goal | None:
        found: object = load_aggregate(self.app, goal_id)
        return found if isinstance(found, Goal) else None

    def advance(self, goal_id: UUID, trace: dict[str, str]) -> None:
        """Move the goal on until it waits on someone or is finished."""
        with self._lock_for(goal_id):
            while (goal := self.load(goal_id)) is not None:
                state = standing(self.app, goal, self.catalogue)
                if state.phase is Phase.DONE:
                    self._after_end(goal, trace)
                    return
                if state.phase is Phase.WAITING:
                    return
                if state.phase is Phase.ACT:
                    self.act(goal, trace)
                else:
                    trace = self.step(goal, state, trace)

    # -- asking the model ------------------------------------------------------------------------

    def step(self, goal: Goal, state: Standing, trace: dict[str, str]) -> dict[str, str]:
        number = goal.next_step
        failures = goal.failed_attempts.get(number, [])
        if self._over_limit(goal, number, failures, trace):
            return trace
        retrieved = self.retriever.retrieve(goal.text, exclude=goal.id)
        knowledge = [k.text for k in retrieved.items]
        turns = conversation(self.app, goal, self.catalogue, knowledge, _last(failures))
        prompt = render(self.template, self.tools_text, turns)
        inv = self._inv(trace)
        self.agent_commands.start_step(StartStep(goal_id=goal.id, step=number), inv)
        attempt = goal.attempts.get(number, 0) + 1
        crash_point("agent.after_step_started")
        span_trace, completion, problem = self._ask(goal, prompt, trace)
        if problem is not None:
            kind, error, raw = problem
            fail = FailAttempt(
                goal_id=goal.id,
                step=number,
                attempt=attempt,
                kind=kind,
                error=error,
                raw_output=raw,
            )
            self.agent_commands.fail_attempt(fail, self._inv(span_trace))
            return trace
        assert completion is not None
        action = self.catalogue.parse(completion.text)
        self._record(goal, number, prompt, retrieved, completion, action, span_trace)
        crash_point("agent.after_decision")
        return span_trace

    def _over_limit(
        self, goal: Goal, number: int, failures: list[str], trace: dict[str, str]
    ) -> bool:
        reason = None
        abandoned = goal.attempts.get(number, 0) - len(failures)
        if number > self.config.max_steps:
            reason = f"reached the limit of {self.config.max_steps} steps"
        elif used(goal) >= self.config.token_budget:
            reason = f"used {used(goal)} tokens; the budget is {self.config.token_budget}"
        elif len(failures) >= MAX_ASKS:
            reason = f"step {number} failed {len(failures)} times; last: {failures[-1]}"
        elif abandoned >= MAX_ABANDONED:
            reason = f"step {number}: the model call was abandoned {abandoned} times (crashes)"
        if reason is None:
            return False
        self._fail_goal(goal, reason, trace)
        return True

    def _ask(
        self, goal: Goal, prompt: str, trace: dict[str, str]
    ) -> tuple[dict[str, str], Completion | None, tuple[str, str, str] | None]:
        """One model call in its own span; returns the span's trace and the outcome."""
        with model_span(self.tracer, self.model, self.parameters, trace) as span:
            try:
                completion = self._call(prompt)
            except ModelTimeout as error:
                span.failed("timeout", str(error))
                return span.trace, None, ("timeout", str(error), "")
            except ModelUnavailable:
                raise  # not this step's fault: the goal waits for a model, see Agent.run_once
            except (RuntimeError, ValueError, OSError) as error:
                # llama.cpp failing mid-call (a decode error, say): recorded, asked again once.
                span.failed(type(error).__name__, str(error))
                return span.trace, None, ("model_error", f"{type(error).__name__}: {error}", "")
            span.finished(completion)
            try:
                self.catalogue.parse(completion.text)
            except InvalidToolCall as error:
                return span.trace, None, ("schema", str(error), completion.text)
            return span.trace, completion, None

    def _call(self, prompt: str) -> Completion:
        runnable = ModelRunnable(self.model, self.parameters)
        future = self._calls.submit(runnable.invoke, prompt)
        try:
            return future.result(timeout=self.config.model_timeout_seconds)
        except FutureTimeout:
            raise ModelTimeout(
                f"the model gave no answer within {self.config.model_timeout_seconds:g}s"
            ) from None

    def _record(
        self,
        goal: Goal,
        number: int,
        prompt: str,
        retrieved: Retrieved,
        completion: Completion,
        action: dict[str, Any],
        trace: dict[str, str],
    ) -> None:
        cmd = RecordStepDecision(
            goal_id=goal.id,
            step=number,
            model=self.model.name,
            model_digest=self.model.digest,
            parameters=self.parameters,
            prompt=prompt,
            context_ids=retrieved.ids,
            context_position=retrieved.position,
            raw_output=completion.text,
            action=m.Action.model_validate(action),
            timings=completion.timings(),
            usage=completion.usage(),
            runtime={
                "library": self.model.runtime,
                "llama_cpp_python": llama_cpp_version() or "",
                "schema_digest": self.digest,
                "finish_reason": completion.finish_reason,
            },
        )
        crash_point("agent.before_decision")
        self.agent_commands.record_step_decision(cmd, self._inv(trace))

    # -- acting on a recorded decision -----------------------------------------------------------

    def act(self, goal: Goal, trace: dict[str, str]) -> None:
        decision = goal.last_decision
        assert decision is not None
        name = str(decision.action.get("name"))
        params = dict(decision.action.get("parameters") or {})
        tool = self.catalogue.tools.get(name)
        inv = self._inv(trace)
        if tool is None:
            self._fail_goal(goal, f"decision names {name!r}, which is not a tool", trace)
        elif tool.kind is ToolKind.FINISH:
            summary = str(params.get("summary") or "finished")
            self._end(
                goal,
                lambda: self.commands.complete_goal(
                    m.CompleteGoal(goal_id=goal.id, summary=summary), inv
                ),
            )
        elif tool.kind is ToolKind.ASK:
            question = str(params.get("question") or "what should I do?")
            self.agent_commands.ask_operator(
                AskOperator(goal_id=goal.id, decision_id=decision.decision_id, question=question),
                inv,
            )
        elif tool.kind is ToolKind.READ:
            found = self.retriever.retrieve(str(params.get("query", "")), exclude=goal.id, limit=5)
            result = {
                "items": [k.text for k in found.items],
                "ids": found.ids,
                "position": found.position,
            }
            self.agent_commands.record_observation(
                RecordObservation(
                    goal_id=goal.id, decision_id=decision.decision_id, tool=tool.name, result=result
                ),
                inv,
            )
        else:
            self.request_action(goal, decision, tool, inv)

    def request_action(self, goal: Goal, decision: Decision, tool: Tool, inv: Invocation) -> None:
        """The one way the agent acts on the world: the action gate. The catalogue decides the
        hazard: a low one is granted by policy in the same save, anything else waits for a
        person; either way the effect runs through the executor's ledger."""
        self.commands.request_action(
            m.RequestAction(
                goal_id=goal.id,
                decision_id=decision.decision_id,
                action=m.Action.model_validate(decision.action),
                confirmation_id=confirmation_id_for(decision.decision_id),
            ),
            inv,
        )

    def _end(self, goal: Goal, command: Callable[[], Any]) -> None:
        try:
            command()
        except InvalidTransition:
            log.info("goal %s ended meanwhile", goal.id)  # cancelled by an operator, say

    def _fail_goal(self, goal: Goal, reason: str, trace: dict[str, str]) -> None:
        self._end(
            goal,
            lambda: self.commands.fail_goal(
                m.FailGoal(goal_id=goal.id, reason=reason[:2000]), self._inv(trace)
            ),
        )

    def _after_end(self, goal: Goal, trace: dict[str, str]) -> None:
        """A cancelled goal's open confirmations are cancelled too, so none can be granted."""
        if goal.status.value != "cancelled":
            return
        ids = {confirmation_id_for(d.decision_id) for d in goal.decisions}
        ids.update(self.pending_confirmations(goal.id))
        actor = Invocation(Actor(ActorKind.SYSTEM, "agent"), trace_context=dict(trace))
        for confirmation_id in ids:
            if confirmation_id not in self.app.repository:
                continue
            try:
                self.commands.cancel_confirmation(
                    m.CancelConfirmation(
                        confirmation_id=confirmation_id, reason=f"goal cancelled: {goal.outcome}"
                    ),
                    actor,
                )
            except AlreadyDecided:
                continue  # answered before the cancel: nothing left to stop


def _last(failures: list[str]) -> str | None:
    return failures[-1] if failures else None
