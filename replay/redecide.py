"""Re-decide: run each recorded decision's prompt through a model again and compare.

Nothing is written unless asked: ``record_comparisons`` saves each comparison as a
``Goal.DecisionReplayed`` event, keyed so that recording the same comparison twice writes once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.llm import (
    DecisionModel,
    LlamaCppDecisionModel,
    ModelUnavailable,
    RulesDecisionModel,
    parse_action,
)
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.goal import Goal
from domain.meta import Actor
from replay.store import ProgressFn, Store
from replay.values import plain

if TYPE_CHECKING:
    from bootstrap.container import Janus

RULES = "rules"


def _no_progress(_: int) -> None:
    return None


def load_model(spec: str | None, settings: Settings) -> DecisionModel:
    """``rules`` (the deterministic in-process model), a .gguf path, or the configured model."""
    chosen = spec or settings.model_path
    if chosen is None or str(chosen) == "":
        raise ModelUnavailable(
            "no model available: pass --model PATH (a .gguf file) or --model rules, "
            "or configure JANUS_MODEL_PATH"
        )
    if str(chosen) == RULES:
        return RulesDecisionModel()
    return LlamaCppDecisionModel(Path(str(chosen)).expanduser())


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
    store: Store, goal_id: UUID, model: DecisionModel, progress: ProgressFn = _no_progress
) -> list[Redecision]:
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
                new_action=parse_action(output),
                seconds=round(time.perf_counter() - started, 4),
            )
        )
        progress(1)
    return results


def record_comparisons(
    janus: Janus, goal_id: UUID, model: DecisionModel, results: list[Redecision], actor: Actor
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
        position = janus.commands.record_decision_replay(cmd, Invocation(actor)).position
    return position


__all__ = ["ModelUnavailable", "Redecision", "load_model", "record_comparisons", "redecide"]
