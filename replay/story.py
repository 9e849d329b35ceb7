"""A goal's story: every event that caused or was caused by it, and the causation tree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from sqlalchemy import or_, select

from commands.errors import NotFound
from domain.confirmation import Confirmation
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from domain.trade import TradeOrder
from event_store.messages import aggregate_type
from event_store.reader import LoggedEvent
from projections.relational import audit
from replay.store import BOOKKEEPING_TOPICS, ProgressFn, Store, ViewIndex, no_progress
from replay.values import aware, event_summary, one_line, plain

# -- a goal's story ----------------------------------------------------------------------------

ID_FIELD = re.compile(r"_id$")


@dataclass
class Story:
    """Every event that belongs to a goal's story, in log order, read from the store."""

    goal_id: UUID
    events: list[LoggedEvent]
    aggregates: set[UUID]
    source: str
    head: int

    def of(self, aggregate_id: UUID) -> list[LoggedEvent]:
        return [e for e in self.events if e.originator_id == aggregate_id]


class _Closure:
    """What is related to a goal, grown forward through the log.

    An event belongs to the story when its aggregate already does, when its correlation id is
    the goal, when its causation id names an event, aggregate or decision of the story, or when
    one of its ``*_id`` fields names an aggregate or decision of the story. Causes precede their
    effects in the log, so one forward pass finds everything.
    """

    def __init__(self, goal_id: UUID) -> None:
        self.goal = str(goal_id)
        self.aggregates: set[UUID] = {goal_id}
        self.refs: set[str] = {goal_id.hex}
        self.needles: set[bytes] = {goal_id.hex.encode(), str(goal_id).encode()}

    def _add_ref(self, ident: UUID) -> None:
        self.refs.add(ident.hex)
        self.needles.add(ident.hex.encode())
        self.needles.add(str(ident).encode())

    def might_relate(self, notification: Notification) -> bool:
        """A cheap test on the raw record: false means certainly unrelated."""
        if notification.topic in BOOKKEEPING_TOPICS:
            return False
        if UUID(str(notification.originator_id)) in self.aggregates:
            return True
        state = notification.state
        return any(needle in state for needle in self.needles)

    def relates(self, logged: LoggedEvent) -> bool:
        event = logged.event
        if logged.originator_id in self.aggregates:
            return True
        meta = event.meta
        if meta.correlation_id == self.goal or _as_hex(meta.causation_id) in self.refs:
            return True
        return any(
            isinstance(value, UUID) and value.hex in self.refs
            for key, value in vars(event).items()
            if ID_FIELD.search(key) and key != "originator_id"
        )

    def add(self, logged: LoggedEvent) -> None:
        self.aggregates.add(logged.originator_id)
        self._add_ref(logged.originator_id)
        self._add_ref(logged.event.meta.event_id)
        decision_id = getattr(logged.event, "decision_id", None)
        if isinstance(logged.event, Goal.DecisionRecorded) and isinstance(decision_id, UUID):
            self._add_ref(decision_id)

    def offer(self, logged: LoggedEvent) -> bool:
        if self.relates(logged):
            self.add(logged)
            return True
        return False


def _as_hex(value: str) -> str:
    try:
        return UUID(value).hex
    except ValueError:
        return value


def goal_story(
    store: Store, goal_id: UUID, progress: ProgressFn = no_progress, upto: int | None = None
) -> Story:
    """The goal's whole story: the index finds candidates, the store says what they are."""
    head = store.head() if upto is None else upto
    closure = _Closure(goal_id)
    candidates: list[LoggedEvent] = []
    scanned_from = 0
    source = "log"
    if store.view is not None and store.view.position > 0:
        limit = min(store.view.position, head)
        candidates = [store.at(p) for p in _view_candidates(store.view, goal_id, limit)]
        scanned_from = limit
        source = "views+log" if limit < head else "views"
    for logged in sorted(candidates, key=lambda e: e.position):
        closure.offer(logged)
    for batch in store.pages(scanned_from, head, progress=progress):
        for notification in batch:
            if closure.might_relate(notification):
                closure.offer(store.decode(notification))
    events: list[LoggedEvent] = []
    for aggregate_id in closure.aggregates:
        events += [store.decode(n) for n in store.table.events_of(aggregate_id, upto=head)]
    if not any(e.originator_id == goal_id for e in events):
        raise NotFound("goal", goal_id)
    events.sort(key=lambda e: e.position)
    return Story(goal_id, events, set(closure.aggregates), source, head)


def _view_candidates(view: ViewIndex, goal_id: UUID, limit: int) -> list[int]:
    """Positions the audit view links to the goal, grown to a fixpoint (a superset)."""

    aggregates = {str(goal_id)}
    refs = {str(goal_id)}
    positions: set[int] = set()
    with view.engine.connect() as conn:
        while True:
            query = (
                select(audit.c.position, audit.c.aggregate_id, audit.c.event_id)
                .where(audit.c.position <= limit)
                .where(
                    or_(
                        audit.c.correlation_id == str(goal_id),
                        audit.c.aggregate_id.in_(sorted(aggregates)),
                        audit.c.causation_id.in_(sorted(refs)),
                    )
                )
            )
            rows = conn.execute(query).all()
            grown = {int(r.position) for r in rows} - positions
            if not grown:
                return sorted(positions)
            positions |= grown
            for row in rows:
                aggregates.add(row.aggregate_id)
                refs.update((row.aggregate_id, row.event_id, UUID(row.event_id).hex))


# -- the causation tree ------------------------------------------------------------------------


@dataclass
class Node:
    kind: str
    ident: str
    events: list[LoggedEvent]
    facts: dict[str, Any]
    children: list[Node] = field(default_factory=list)

    @property
    def first_position(self) -> int:
        return self.events[0].position if self.events else 0


def fork_origin(events: list[LoggedEvent]) -> tuple[str, int] | None:
    """(original goal id, position) when this goal was created by ``janus replay fork``."""
    for logged in events[:2]:  # Goal.fork records Forked right after Submitted
        if isinstance(logged.event, Goal.Forked):
            return str(logged.event.original_id), logged.event.at_position
    return None


def causation_tree(story: Story, full: bool = False) -> Node:
    """Goal -> decisions -> confirmations -> effects; anything else under what caused it."""
    by_aggregate: dict[UUID, list[LoggedEvent]] = {}
    for logged in story.events:
        by_aggregate.setdefault(logged.originator_id, []).append(logged)
    goal_events = by_aggregate.pop(story.goal_id)
    root = _goal_node(story.goal_id, goal_events, full)
    decisions: dict[UUID, Node] = {}
    owner_of_event: dict[str, Node] = {}
    for logged in goal_events:
        owner_of_event[logged.event.meta.event_id.hex] = root
    for child in root.children:
        decision_id = UUID(child.ident)
        decisions[decision_id] = child
        owner_of_event[child.events[0].event.meta.event_id.hex] = child
    pending = sorted(by_aggregate.items(), key=lambda item: item[1][0].position)
    nodes: dict[UUID, Node] = {story.goal_id: root}
    for aggregate_id, events in pending:
        node = _aggregate_node(aggregate_id, events, full)
        nodes[aggregate_id] = node
        for logged in events:
            owner_of_event[logged.event.meta.event_id.hex] = node
        _parent(events[0], decisions, nodes, owner_of_event, root).children.append(node)
    _sort(root)
    return root


def _parent(
    created: LoggedEvent,
    decisions: dict[UUID, Node],
    nodes: dict[UUID, Node],
    owner_of_event: dict[str, Node],
    root: Node,
) -> Node:
    event = created.event
    decision_id = getattr(event, "decision_id", None)
    if isinstance(decision_id, UUID) and decision_id in decisions:
        return decisions[decision_id]
    for name in ("confirmation_id", "job_id"):
        ref = getattr(event, name, None)
        if isinstance(ref, UUID) and ref in nodes:
            return nodes[ref]
    cause = _as_hex(event.meta.causation_id)
    if cause in owner_of_event:
        return owner_of_event[cause]
    for ident, node in nodes.items():
        if ident.hex == cause:
            return node
    return root


def _sort(node: Node) -> None:
    node.children.sort(key=lambda n: n.first_position)
    for child in node.children:
        _sort(child)


def _waited(start: LoggedEvent, end: LoggedEvent | None) -> float | None:
    if end is None:
        return None
    return (aware(end.event.timestamp) - aware(start.event.timestamp)).total_seconds()


def _goal_node(goal_id: UUID, events: list[LoggedEvent], full: bool) -> Node:
    decision_events = (Goal.DecisionRecorded, Goal.DecisionReplayed)
    own = [e for e in events if not isinstance(e.event, decision_events)]
    submitted = events[0].event
    facts: dict[str, Any] = {
        "text": submitted.text,
        "submitted_by": submitted.submitted_by,
        "priority": getattr(submitted, "priority", None),
        "status": "submitted",
        "outcome": None,
    }
    origin = fork_origin(events)
    if origin is not None:
        facts["forked_from"], facts["forked_at_position"] = origin
    for logged in own:
        match logged.event:
            case Goal.Planned() as planned:
                facts["status"], facts["plan"] = "planned", list(planned.steps)
            case Goal.Completed() as done:
                facts["status"], facts["outcome"] = "completed", done.summary
            case Goal.Failed() as failed:
                facts["status"], facts["outcome"] = "failed", failed.reason
            case Goal.Cancelled() as cancelled:
                facts["status"], facts["outcome"] = "cancelled", cancelled.reason
    node = Node("goal", str(goal_id), own, facts)
    by_decision: dict[UUID, Node] = {}
    for logged in events:
        if isinstance(logged.event, Goal.DecisionRecorded):
            child = _decision_node(logged, full)
            by_decision[logged.event.decision_id] = child
            node.children.append(child)
        elif isinstance(logged.event, Goal.DecisionReplayed):
            _add_replay(by_decision[logged.event.decision_id], logged, full)
    return node


def _add_replay(decision: Node, logged: LoggedEvent, full: bool) -> None:
    """A recorded re-run of the decision (``janus replay decisions --record``)."""
    event = logged.event
    replay: dict[str, Any] = {
        "position": logged.position,
        "model": event.model,
        "model_digest": event.model_digest,
        "action": plain(event.action),
        "agrees": event.agrees,
        "recorded_at": plain(event.timestamp),
    }
    if full:
        replay["raw_output"] = event.raw_output
    decision.events.append(logged)
    decision.facts.setdefault("replays", []).append(replay)


def _decision_node(logged: LoggedEvent, full: bool) -> Node:
    event = logged.event
    facts: dict[str, Any] = {
        "model": event.model,
        "model_digest": event.model_digest,
        "parameters": plain(event.parameters),
        "prompt_summary": one_line(event.prompt, 120),
        "context_ids": list(event.context_ids),
        "action": plain(event.action),
        "timings": plain(event.timings),
    }
    if event.step:  # an agent step: its key, cost, and what the model saw and said
        facts.update(
            step=event.step,
            usage=plain(event.usage),
            context_position=event.context_position,
            runtime=plain(event.runtime),
            prompt_tail=event.prompt[-2_000:],
            raw_output_summary=one_line(event.raw_output, 200),
        )
    if full:
        facts["prompt"] = event.prompt
        facts["raw_output"] = event.raw_output
    return Node("decision", str(event.decision_id), [logged], facts)


def _aggregate_node(aggregate_id: UUID, events: list[LoggedEvent], full: bool) -> Node:
    created = events[0].event
    kind = aggregate_type(events[0].topic)
    if isinstance(created, Confirmation.Requested):
        return Node("confirmation", str(aggregate_id), events, _confirmation_facts(events))
    if isinstance(created, Effect.Started):
        return Node("effect", str(aggregate_id), events, _effect_facts(events))
    if isinstance(created, Job.Scheduled):
        facts = {"name": created.name, "trigger": plain(created.trigger)}
        facts["action"] = plain(created.action)
        return Node("job", str(aggregate_id), events, facts)
    if isinstance(created, JobFire.Fired | JobFire.Missed):
        facts = {"scheduled_for": plain(created.scheduled_for), "status": events[-1].type_name}
        return Node("fire", str(aggregate_id), events, facts)
    if isinstance(created, TradeOrder.Proposed):
        facts = {
            "symbol": created.symbol,
            "side": created.side,
            "quantity": plain(created.quantity),
            "limit_price": plain(created.limit_price),
            "status": events[-1].type_name.split(".")[-1].lower(),
        }
        return Node("order", str(aggregate_id), events, facts)
    if isinstance(created, Goal.Submitted):
        facts = {"text": created.text, "events": len(events)}
        origin = fork_origin(events)
        if origin is not None:
            facts["forked_from"], facts["forked_at_position"] = origin
        return Node("fork" if origin else "goal", str(aggregate_id), events[:1], facts)
    return Node(kind.lower(), str(aggregate_id), events, {"summary": event_summary(created)})


def _confirmation_facts(events: list[LoggedEvent]) -> dict[str, Any]:
    requested = events[0]
    created = requested.event
    facts: dict[str, Any] = {
        "action": created.action,
        "parameters": plain(created.parameters),
        "hazard": created.hazard,
        "requested_at": plain(created.timestamp),
        "expires_at": plain(created.expires_at),
        "status": "pending",
        "decided_by": None,
        "decided_at": None,
        "waited_seconds": None,
        "reason": None,
    }
    for logged in events[1:]:
        event = logged.event
        status = {
            Confirmation.Granted: "granted",
            Confirmation.Denied: "denied",
            Confirmation.Expired: "expired",
            Confirmation.Cancelled: "cancelled",
        }.get(type(event))
        if status is None:
            continue
        facts["status"] = status
        facts["decided_at"] = plain(event.timestamp)
        facts["waited_seconds"] = _waited(requested, logged)
        facts["decided_by"] = (
            getattr(event, "granted_by", None)
            or getattr(event, "denied_by", None)
            or getattr(event, "cancelled_by", None)
        )
        facts["reason"] = getattr(event, "reason", None)
    return facts


def _effect_facts(events: list[LoggedEvent]) -> dict[str, Any]:
    started = events[0]
    facts: dict[str, Any] = {
        "action": started.event.action,
        "parameters": plain(started.event.parameters),
        "idempotency_key": started.event.idempotency_key,
        "status": "started",
        "attempts": 1,
        "result": None,
        "error": None,
        "happened": None,
        "duration_seconds": _waited(started, events[-1]),
    }
    for logged in events[1:]:
        match logged.event:
            case Effect.AttemptStarted() as attempt:
                facts["status"], facts["attempts"] = "started", attempt.attempt
            case Effect.Succeeded() as ok:
                facts["status"], facts["result"] = "succeeded", plain(ok.result)
            case Effect.Failed() as failed:
                facts["status"], facts["error"] = "failed", failed.error
            case Effect.OutcomeUnknown() as unknown:
                facts["status"], facts["error"] = "outcome_unknown", unknown.reason
            case Effect.Reconciled() as reconciled:
                facts["status"], facts["happened"] = "reconciled", reconciled.happened
                facts["reconciled_by"] = reconciled.reconciled_by
                facts["note"] = reconciled.note
    return facts


def event_line_json(logged: LoggedEvent) -> dict[str, Any]:
    meta = logged.event.meta
    return {
        "position": logged.position,
        "event_id": str(meta.event_id),
        "type": logged.type_name,
        "timestamp": plain(logged.event.timestamp),
        "actor": str(meta.actor),
        "node_id": meta.node_id,
        "command_id": meta.command_id,
        "causation_id": meta.causation_id,
        "summary": event_summary(logged.event),
    }


def tree_json(node: Node) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "id": node.ident,
        "facts": plain(node.facts),
        "events": [event_line_json(e) for e in node.events],
        "children": [tree_json(c) for c in node.children],
    }


def flatten(node: Node) -> list[Node]:
    return [node, *(n for child in node.children for n in flatten(child))]
