"""Time travel: aggregates and views as they were at a log position, diffs, stepping, forks.

State at position P is, by definition, what a fresh replay of events 1..P produces. For one
aggregate that is ``repository.get(id, version=v)`` where v counts the aggregate's events at
positions <= P (an index lookup on the events table, so a snapshot, when the application takes
them, spares reading even the aggregate's own early events). For every aggregate it is a fold of
the log up to P, exactly as a fresh replay would do it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Notification
from sqlalchemy.engine import Engine

from commands import models as m
from commands.invocation import Invocation
from commands.service import CommandService
from domain.base import derived_id
from domain.goal import Goal
from domain.meta import Actor
from event_store.messages import aggregate_type
from event_store.reader import LoggedEvent
from projections.relational import RelationalProjection
from projections.runner import ProjectionRunner, ProjectionStalled
from replay.store import ProgressFn, Store, UnreadableEvent
from replay.story import goal_story
from replay.values import BadInput, aggregate_json


def _no_progress(_: int) -> None:
    return None


# -- one aggregate ------------------------------------------------------------------------------


def aggregate_at(store: Store, aggregate_id: UUID, position: int) -> Any | None:
    """The aggregate as it was right after ``position``; None if it did not exist yet."""
    version = store.table.version_at(aggregate_id, position)
    if version == 0:
        return None
    return store.app.repository.get(aggregate_id, version=version)


# -- every aggregate ----------------------------------------------------------------------------


@dataclass
class Replayed:
    """Every aggregate folded from the log up to ``position``."""

    position: int
    aggregates: dict[UUID, Any] = field(default_factory=dict)
    last_position: dict[UUID, int] = field(default_factory=dict)
    events: int = 0

    def visible(self, include_bookkeeping: bool = False) -> list[Any]:
        """Aggregates in order of their last change, newest last."""
        chosen = [
            a
            for a in self.aggregates.values()
            if include_bookkeeping or type(a).__qualname__ != "CommandRecord"
        ]
        return sorted(chosen, key=lambda a: self.last_position[a.id])


def replay_to(
    store: Store,
    position: int,
    progress: ProgressFn = _no_progress,
    start: Replayed | None = None,
    only: set[UUID] | None = None,
) -> Replayed:
    """Fold the log into aggregates up to ``position`` (continuing ``start`` if given).

    This is the same mutation a repository performs, applied to the whole log in order.
    """
    state = start or Replayed(0)
    if position < state.position:
        raise BadInput(f"cannot replay backwards from {state.position} to {position}")
    aggregates, last = state.aggregates, state.last_position
    decode = store.app.mapper.to_domain_event
    for batch in store.pages(state.position, position, progress=progress):
        for notification in batch:
            ident = _originator(notification)
            if only is not None and ident not in only:
                continue
            try:
                event: Any = decode(notification)
            except Exception as error:  # the same failure a fresh replay would hit, named
                raise UnreadableEvent(notification.id, notification.topic, error) from error
            aggregates[ident] = event.mutate(aggregates.get(ident))
            last[ident] = notification.id
            state.events += 1
    state.position = position
    return state


@dataclass
class Versions:
    """Which aggregates existed at ``position``, their type and version: read without decoding.

    Enough to list the state of the whole log; each aggregate shown is then loaded at its
    version (``repository.get``, snapshots and all), so only what is printed is decoded.
    """

    position: int
    latest: dict[UUID, tuple[int, int]] = field(default_factory=dict)
    types: dict[UUID, str] = field(default_factory=dict)
    events: int = 0

    @property
    def versions(self) -> dict[UUID, int]:
        return {ident: version for ident, (version, _) in self.latest.items()}

    def last_position(self, ident: UUID) -> int:
        return self.latest[ident][1]

    def newest(self, kind: str | None = None, include_bookkeeping: bool = False) -> list[UUID]:
        chosen = [
            ident
            for ident, name in self.types.items()
            if (kind is None or name == kind)
            and (include_bookkeeping or kind == name or name != "CommandRecord")
        ]
        return sorted(chosen, key=self.last_position)

    def load(self, store: Store, ident: UUID) -> Any:
        return store.app.repository.get(ident, version=self.latest[ident][0])


def versions_at(store: Store, position: int, progress: ProgressFn = _no_progress) -> Versions:
    found = Versions(position)
    latest, types = found.latest, found.types
    for batch in store.pages(0, position, progress=progress):
        for n in batch:
            # Both recorders hand back UUIDs; a log starts each aggregate at version 1.
            ident: Any = n.originator_id
            latest[ident] = (n.originator_version, n.id)
            if n.originator_version == 1:
                types[ident] = aggregate_type(n.topic)
        found.events += len(batch)
    for ident in latest.keys() - types.keys():
        types[ident] = store.kind_of(ident) or "?"
    return found


def _originator(notification: Notification) -> UUID:
    ident = notification.originator_id
    return ident if isinstance(ident, UUID) else UUID(str(ident))


def snapshot(replayed: Replayed) -> dict[UUID, dict[str, Any]]:
    return {
        ident: aggregate_json(agg, replayed.last_position[ident])
        for ident, agg in replayed.aggregates.items()
    }


# -- diffs -------------------------------------------------------------------------------------


@dataclass
class Change:
    ident: str
    type: str
    from_version: int | None
    to_version: int
    fields: dict[str, tuple[Any, Any]]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.ident,
            "type": self.type,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "changes": {k: {"from": a, "to": b} for k, (a, b) in self.fields.items()},
        }


@dataclass
class Diff:
    before: int
    after: int
    created: list[Change]
    changed: list[Change]
    unchanged: int

    def json(self) -> dict[str, Any]:
        return {
            "from_position": self.before,
            "to_position": self.after,
            "created": [c.json() for c in self.created],
            "changed": [c.json() for c in self.changed],
            "unchanged": self.unchanged,
        }


def field_changes(
    before: dict[str, Any] | None, after: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    old = (before or {}).get("state", {})
    new = after["state"]
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def compare(
    before: dict[UUID, dict[str, Any]],
    after: dict[UUID, dict[str, Any]],
    positions: tuple[int, int],
    include_bookkeeping: bool = False,
) -> Diff:
    created: list[Change] = []
    changed: list[Change] = []
    unchanged = 0
    for ident, now in sorted(after.items(), key=lambda item: item[1].get("last_position", 0)):
        if not include_bookkeeping and now["type"] == "CommandRecord":
            continue
        then = before.get(ident)
        if then is not None and then["version"] == now["version"]:
            unchanged += 1
            continue
        change = Change(
            str(ident),
            now["type"],
            then["version"] if then else None,
            now["version"],
            field_changes(then, now),
        )
        (changed if then else created).append(change)
    return Diff(positions[0], positions[1], created, changed, unchanged)


def diff_positions(
    store: Store,
    before: int,
    after: int,
    aggregate_id: UUID | None = None,
    progress: ProgressFn = _no_progress,
) -> Diff:
    if before > after:
        raise BadInput(f"--diff {before} {after}: the first point must not be after the second")
    if aggregate_id is not None:
        states = []
        for position in (before, after):
            agg = aggregate_at(store, aggregate_id, position)
            states.append({aggregate_id: aggregate_json(agg)} if agg is not None else {})
        return compare(states[0], states[1], (before, after), include_bookkeeping=True)
    first = replay_to(store, before, progress)
    then = snapshot(first)
    second = replay_to(store, after, progress, start=first)
    return compare(then, snapshot(second), (before, after))


# -- a relational view, rebuilt into a scratch database ----------------------------------------


def rebuild_view(
    store: Store, position: int, engine: Engine, progress: ProgressFn = _no_progress
) -> None:
    """The relational view exactly as the projection would have built it from events 1..P."""
    runner = ProjectionRunner(RelationalProjection(), store.reader, engine)
    runner.setup()
    for batch in store.pages(0, position, progress=progress):
        runner.apply_batch(batch)
    status = runner.status()
    if status.state == "stalled":
        raise ProjectionStalled(
            f"the view cannot be built past position {status.error_position}: {status.error}"
        )


# -- stepping through a goal --------------------------------------------------------------------


@dataclass
class Step:
    number: int
    total: int
    logged: LoggedEvent
    state: dict[str, Any]
    changes: dict[str, tuple[Any, Any]]


def goal_steps(store: Store, goal_id: UUID, progress: ProgressFn = _no_progress) -> Iterator[Step]:
    """The goal's story one event at a time, with the touched aggregate's state after each."""
    story = goal_story(store, goal_id, progress)
    aggregates: dict[UUID, Any] = {}
    total = len(story.events)
    for number, logged in enumerate(story.events, start=1):
        ident = logged.originator_id
        previous = aggregates.get(ident)
        before = aggregate_json(previous) if previous is not None else None
        aggregates[ident] = logged.event.mutate(previous)
        after = aggregate_json(aggregates[ident], logged.position)
        yield Step(number, total, logged, after, field_changes(before, after))


# -- forks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    fork_id: UUID
    original_id: UUID
    position: int
    decisions: int
    planned: bool
    last_position: int

    def json(self) -> dict[str, Any]:
        return {
            "fork_id": str(self.fork_id),
            "forked_from": str(self.original_id),
            "forked_at_position": self.position,
            "decisions_copied": self.decisions,
            "plan_copied": self.planned,
            "position": self.last_position,
        }


def fork_key(original: UUID, position: int, fork_id: UUID, step: str) -> str:
    """The idempotency key of each fork command, so a fork interrupted half-way and run again
    with the same fork id finishes it instead of copying anything twice."""
    return f"fork:{original}:{position}:{fork_id}:{step}"


def fork_goal(
    commands: CommandService,
    store: Store,
    goal_id: UUID,
    position: int,
    actor: Actor,
    fork_id: UUID | None = None,
) -> Fork:
    """A new goal whose history is the original's own history up to ``position``.

    Copied: the goal (text, priority), its plan and its decisions (prompt, output, action,
    model, parameters), through the ordinary commands. Not copied: confirmations and effects,
    which belong to the world the original acted on; a fixed agent decides again from here.
    """
    goal = aggregate_at(store, goal_id, position)
    if goal is None:
        raise BadInput(f"goal {goal_id} did not exist yet at position {position}")
    if not isinstance(goal, Goal):
        raise BadInput(f"{goal_id} is not a goal")
    if goal.status.is_terminal:
        raise BadInput(
            f"goal {goal_id} was already {goal.status.value} at position {position}: "
            "fork from an earlier position"
        )
    origin = store.table.events_of(goal_id, upto=position)[-1]
    cause = str(store.decode(origin).event.meta.event_id)
    fork_id = fork_id or uuid4()

    def invocation(step: str) -> Invocation:
        key = fork_key(goal_id, position, fork_id, step)
        return Invocation(actor, idempotency_key=key, causation_id=cause)

    result = None
    planned, decisions = False, 0
    # The original's own events in their order: the fork's history reads the same way.
    for notification in store.table.events_of(goal_id, upto=position):
        match store.decode(notification).event:
            case Goal.Submitted():
                cmd = m.ForkGoal(
                    original_id=goal_id,
                    original_version=goal.version,
                    at_position=position,
                    goal_id=fork_id,
                )
                result = commands.fork_goal(cmd, invocation("goal"))
            case Goal.Planned() as plan:
                planned = True
                cmd_plan = m.RecordPlan(goal_id=fork_id, steps=list(plan.steps))
                result = commands.record_plan(
                    cmd_plan, invocation(f"plan-{plan.originator_version}")
                )
            case Goal.DecisionRecorded() as decision:
                decisions += 1
                copied = m.RecordDecision(
                    goal_id=fork_id,
                    decision_id=derived_id("fork-decision", fork_id, decision.decision_id),
                    model=decision.model,
                    model_digest=decision.model_digest,
                    parameters=dict(decision.parameters),
                    prompt=decision.prompt,
                    context_ids=list(decision.context_ids),
                    raw_output=decision.raw_output,
                    action=m.Action.model_validate(decision.action),
                    timings=dict(decision.timings),
                )
                result = commands.record_decision(copied, invocation(f"decision-{decisions}"))
    assert result is not None, "a goal's first event is always Submitted"
    return Fork(fork_id, goal_id, position, decisions, planned, result.position)
