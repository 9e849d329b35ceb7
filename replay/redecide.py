"""Re-decide: run each recorded decision's prompt through a model again and compare.

Nothing is written unless asked: ``record_comparisons`` saves each comparison as a
``Goal.DecisionReplayed`` event, keyed so that recording the same comparison twice writes once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from commands import models as m
from commands.invocation import Invocation
from commands.service import CommandService
from domain.goal import Goal
from domain.meta import Actor
from replay.store import ProgressFn, Store
from replay.values import plain

# How a model's raw output reads as an action (``adapters.llm.parse_action`` for the agent's).
ParseAction = Callable[[str], dict[str, Any] | None]


class Redecider(Protocol):
    """What re-deciding asks of a model: ``adapters.llm.DecisionModel`` is one.

    The caller brings the model (``bootstrap.models.redecide_model`` picks and builds it), so
    this library never chooses an implementation.
    """

    @property
    def name(self) -> str: ...

    @property
    def digest(self) -> str: ...

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str: ...


def _no_progress(_: int) -> None:
    return None


def actions_agree(recorded: Any, new: Any) -> bool:
    if not isinstance(recorded, dict) or not isinstance(new, dict):
        return False
    return bool(
        recorded.get("name") == new.get("name")
        and plain(recorded.get("parameters") or {}) == plain(new.get("parameters") or {})
    )


@dataclass(frozen=True)
class Redecision:
    decision_id: UUID
    position: int
    model: str
    model_digest: str
    parameters: dict[str, Any]
    prompt: str
    recorded_output: str
    recorded_action: dict[str, Any]
    new_output: str
    new_action: dict[str, Any] | None
    seconds: float

    @property
    def agree(self) -> bool:
        return actions_agree(self.recorded_action, self.new_action)

    def json(self, full: bool) -> dict[str, Any]:
        recorded: dict[str, Any] = {
            "model": self.model,
            "model_digest": self.model_digest,
            "parameters": plain(self.parameters),
            "action": plain(self.recorded_action),
        }
        replayed: dict[str, Any] = {"action": plain(self.new_action), "seconds": self.seconds}
        if full:
            recorded["raw_output"] = self.recorded_output
            recorded["prompt"] = self.prompt
            replayed["raw_output"] = self.new_output
        return {
            "decision_id": str(self.decision_id),
            "position": self.position,
            "recorded": recorded,
            "replayed": replayed,
            "agree": self.agree,
        }


def recorded_decisions(store: Store, goal_id: UUID) -> list[tuple[int, Any]]:
    """The goal's DecisionRecorded events with their positions, read from the store."""
    found = []
    for notification in store.table.events_of(goal_id):
        logged = store.decode(notification)
        if isinstance(logged.event, Goal.DecisionRecorded):
            found.append((logged.position, logged.event))
    return found


def redecide(
    store: Store,
    goal_id: UUID,
    model: Redecider,
    parse: ParseAction,
    progress: ProgressFn = _no_progress,
) -> list[Redecision]:
    """Each recorded decision of the goal, asked of ``model`` again, in log order."""
    results = []
    for position, event in recorded_decisions(store, goal_id):
        started = time.perf_counter()
        output = model.generate(event.prompt, event.parameters)
        results.append(
            Redecision(
                decision_id=event.decision_id,
                position=position,
                model=event.model,
                model_digest=event.model_digest,
                parameters=dict(event.parameters),
                prompt=event.prompt,
                recorded_output=event.raw_output,
                recorded_action=dict(event.action),
                new_output=output,
                new_action=parse(output),
                seconds=round(time.perf_counter() - started, 4),
            )
        )
        progress(1)
    return results


def record_comparisons(
    commands: CommandService,
    goal_id: UUID,
    model: Redecider,
    results: list[Redecision],
    actor: Actor,
) -> int:
    """Save each comparison on the goal; returns the log position after the last one."""
    position = 0
    for result in results:
        cmd = m.RecordDecisionReplay(
            goal_id=goal_id,
            decision_id=result.decision_id,
            model=model.name,
            model_digest=model.digest,
            raw_output=result.new_output,
            action=result.new_action,
            agrees=result.agree,
            timings={"seconds": result.seconds},
        )
        # The service writes nothing when this model already gave this answer to this decision.
        position = commands.record_decision_replay(cmd, Invocation(actor)).position
    return position


__all__ = ["ParseAction", "Redecider", "Redecision", "record_comparisons", "redecide"]
