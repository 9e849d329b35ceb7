"""The agent: a process manager that turns submitted goals into decisions made by a model.

It follows the log from its own tracked position (the loop in ``commands/process_manager.py``).
Goal submissions, operator answers and the outcomes of the actions it started (confirmation
answered, effect done) wake the goal they belong to; the goal is then advanced until it waits on
a person or a device, or is finished. Where a goal stands is always derived from recorded facts
(``commands/agent_state.py``), so a crash anywhere leaves nothing to remember: the batch is read
again and each goal is found where it was. The tracked position only moves past a batch once
every goal in it has been advanced, so goals wait (and nothing is lost) while the model cannot
run.

One agent per log works goals (the caller holds the ``agent`` leader lock); inside it, goals run
concurrently up to ``AgentConfig.concurrency``, each goal on one thread at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from adapters.llm import DecisionModel
from adapters.retrieval import Retriever
from commands.agent_commands import AgentCommands
from commands.agent_step import AgentConfig, GoalWorker
from commands.agent_tools import ToolCatalogue
from commands.process_manager import ProcessManager
from commands.service import CommandService
from domain.confirmation import Confirmation
from domain.effect import Effect
from domain.goal import Goal
from event_store.application import JanusApplication

log = logging.getLogger(__name__)

# Facts that can move a goal on. Goal events name the goal; the others carry it as correlation.
WAKE_TOPICS = frozenset(
    get_topic(cls)
    for cls in (
        Goal.Submitted,
        Goal.QuestionAnswered,
        Goal.Cancelled,
        Confirmation.Granted,
        Confirmation.Denied,
        Confirmation.Expired,
        Confirmation.Cancelled,
        Effect.Succeeded,
        Effect.Failed,
        Effect.OutcomeUnknown,
        Effect.Reconciled,
    )
)
GOAL_TOPIC_PREFIX = get_topic(Goal) + "."


@dataclass(frozen=True)
class Wake:
    goal_id: UUID
    trace_context: dict[str, str]


class Agent(ProcessManager[DecisionModel]):
    name = "agent"
    kept = "goals"

    def __init__(
        self,
        app: JanusApplication,
        commands: CommandService,
        model: DecisionModel,
        retriever: Retriever,
        node_id: str,
        config: AgentConfig | None = None,
        catalogue: ToolCatalogue | None = None,
        pending_confirmations: Callable[[UUID], list[UUID]] | None = None,
        tracer: Any = None,
        batch_size: int = 200,
    ) -> None:
        super().__init__(app, model, batch_size)
        self.config = config or AgentConfig()
        self.worker = GoalWorker(
            app,
            commands,
            AgentCommands(commands.runner),
            model,
            retriever,
            catalogue or ToolCatalogue(),
            self.config,
            node_id,
            pending_confirmations or (lambda _goal: []),
            tracer,
        )
        self.pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="agent-goal")

    def handle(self, batch: list[Notification]) -> None:
        """Advance every goal the batch wakes, concurrently; raises the first goal's error."""
        self.model.check()
        wakes = self._wakes(batch)
        failures = [f.exception() for f in [self.pool.submit(self._advance, w) for w in wakes]]
        self.worker.forget_goals()  # every goal of the batch is done with; none is in flight
        errors = [e for e in failures if e is not None]
        if errors:
            raise errors[0]

    def _advance(self, wake: Wake) -> None:
        self.worker.advance(wake.goal_id, wake.trace_context)

    def _wakes(self, batch: list[Notification]) -> list[Wake]:
        """One wake per goal, in log order, with the trace of the fact that woke it first."""
        wakes: dict[UUID, Wake] = {}
        for notification in batch:
            if notification.topic not in WAKE_TOPICS:
                continue
            logged = self.reader.decode(notification)
            goal_id = _goal_of(notification, logged.event)
            if goal_id is not None and goal_id not in wakes:
                wakes[goal_id] = Wake(goal_id, dict(logged.event.meta.trace_context))
        return list(wakes.values())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.worker.close()


def _goal_of(notification: Notification, event: Any) -> UUID | None:
    if notification.topic.startswith(GOAL_TOPIC_PREFIX):
        return UUID(str(notification.originator_id))
    try:
        return UUID(event.meta.correlation_id)
    except (AttributeError, ValueError):
        return None
