"""The object view's audit bundles: one JSON object per finished goal, its whole story.

A goal's story is every event correlated with it (goal commands, decisions, confirmations and
effects all carry the goal's id as their correlation id), from Goal.Submitted to the event that
finished it (Completed, Failed or Cancelled), in log order, each in the form ``janus events
show --json`` prints. The projection sees the log once, in order, so it gathers each open story
as the events pass and keeps it under ``<prefix>/stories/`` (written at the end of each batch,
before the position): a restart mid-story, even after SIGKILL, reads the story so far back from
the store instead of memory. Events already in a story (a batch replayed after a crash) are
skipped by position, so the bundle a finish writes is the same however the log was batched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

from adapters.blobs import canonical_json
from domain.goal import Goal
from event_store.reader import LoggedEvent
from event_store.values import event_json

__all__ = ["FINISHED", "Stories", "bundle_digest", "story_goal"]

FINISHED: dict[type, str] = {
    Goal.Completed: "completed",
    Goal.Failed: "failed",
    Goal.Cancelled: "cancelled",
}

Story = list[dict[str, Any]]


def story_goal(logged: LoggedEvent) -> UUID | None:
    """The goal whose story this event may belong to: its correlation id, when that is an id."""
    if isinstance(logged.event, Goal.Submitted):
        return logged.originator_id
    try:
        correlation = UUID(logged.event.meta.correlation_id)
    except ValueError:
        return None
    if correlation == logged.originator_id and not _is_goal_event(logged.event):
        return None  # a document or job correlated with itself: no goal's story, no lookup
    return correlation


def _is_goal_event(event: Any) -> bool:
    return getattr(Goal, type(event).__name__, None) is type(event)


class Stories:
    """Open stories and the bundles finished in one pass over events.

    ``load`` reads a story stored by an earlier batch (None: no open story for that id, so
    the id is not an unfinished goal's, or its goal finished before this pass).
    """

    def __init__(self, load: Callable[[UUID], Story | None]) -> None:
        self._load = load
        self.open: dict[UUID, Story | None] = {}
        self.changed: set[UUID] = set()
        self.finished: dict[UUID, tuple[dict[str, Any], LoggedEvent]] = {}

    def story(self, goal_id: UUID) -> Story | None:
        if goal_id not in self.open:
            self.open[goal_id] = self._load(goal_id)
        return self.open[goal_id]

    def offer(self, logged: LoggedEvent) -> None:
        goal_id = story_goal(logged)
        if goal_id is None:
            return
        story = self.story(goal_id)
        if story is None:
            if not isinstance(logged.event, Goal.Submitted):
                return  # no story open: not a goal, or its goal already finished
            story = self.open[goal_id] = []
        if story and story[-1]["position"] >= logged.position:
            return  # already gathered (a batch replayed after a crash)
        story.append(event_json(logged))
        self.changed.add(goal_id)
        status = FINISHED.get(type(logged.event))
        if status is not None and logged.originator_id == goal_id:
            self.finished[goal_id] = (_bundle(goal_id, status, story, logged), logged)
            self.open[goal_id] = None


def _bundle(goal_id: UUID, status: str, story: Story, finish: LoggedEvent) -> dict[str, Any]:
    event = finish.event
    return {
        "goal_id": str(goal_id),
        "status": status,
        "outcome": getattr(event, "summary", None) or getattr(event, "reason", None),
        "finished_by": {
            "event_id": str(event.meta.event_id),
            "position": finish.position,
            "type": finish.type_name,
        },
        "events": story,
    }


def bundle_digest(bundle: Any) -> str:
    return hashlib.sha256(canonical_json(bundle)).hexdigest()
