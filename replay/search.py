"""Searching the log for goals, decisions, confirmations and effects by what they say and did."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from domain.base import JanusAggregate
from domain.confirmation import Confirmation
from domain.effect import Effect
from domain.goal import Goal
from event_store.messages import event_type
from event_store.reader import LoggedEvent
from projections.relational import confirmations, decisions, effects, goals
from replay.store import ProgressFn, Store, no_progress, topics_for
from replay.values import BadInput, aware, event_fields, plain

# -- search ------------------------------------------------------------------------------------

SEARCH_KINDS = ("goal", "decision", "confirmation", "effect")
SEARCH_AGGREGATES: dict[str, type[JanusAggregate]] = {
    "goal": Goal,
    "confirmation": Confirmation,
    "effect": Effect,
}


@dataclass
class Found:
    """One goal, decision, confirmation or effect, folded from its events."""

    kind: str
    ident: str
    goal_id: str
    status: str
    created_at: datetime
    updated_at: datetime
    position: int
    title: str
    hazard: str | None = None
    actors: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    haystack: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.ident,
            "goal_id": self.goal_id,
            "status": self.status,
            "hazard": self.hazard,
            "created_at": plain(self.created_at),
            "updated_at": plain(self.updated_at),
            "last_position": self.position,
            "actors": sorted(self.actors),
            "nodes": sorted(self.nodes),
            "title": self.title,
        }


@dataclass(frozen=True)
class Criteria:
    text: str | None = None
    kinds: tuple[str, ...] = ()
    actor: str | None = None
    status: str | None = None
    hazard: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    node: str | None = None
    outcome_unknown: bool = False
    expired: bool = False
    limit: int = 50

    def effective(self) -> Criteria:
        """The one-flag shortcuts, spelled out; kinds narrowed to those a filter applies to."""
        kinds = set(self.kinds or SEARCH_KINDS)
        status = self.status
        if self.outcome_unknown:
            kinds &= {"effect"}
            status = "outcome_unknown"
        if self.expired:
            kinds &= {"confirmation"}
            status = "expired"
        if self.hazard:
            kinds &= {"confirmation"}
        if status:
            kinds -= {"decision"}
        unknown = set(self.kinds) - set(SEARCH_KINDS)
        if unknown:
            raise BadInput(
                f"unknown kind {sorted(unknown)[0]!r} (kinds: {', '.join(SEARCH_KINDS)})"
            )
        if self.outcome_unknown and self.expired:
            raise BadInput("--outcome-unknown and --expired select different kinds: pick one")
        if self.since and self.until and self.since > self.until:
            raise BadInput("--since is after --until")
        return Criteria(
            text=self.text,
            kinds=tuple(k for k in SEARCH_KINDS if k in kinds),
            actor=self.actor,
            status=status,
            hazard=self.hazard,
            since=self.since,
            until=self.until,
            node=self.node,
            limit=self.limit,
        )

    def accepts(self, found: Found) -> bool:
        if found.kind not in self.kinds:
            return False
        if self.status and found.status != self.status:
            return False
        if self.hazard and found.hazard != self.hazard:
            return False
        if self.since and found.created_at < self.since:
            return False
        if self.until and found.created_at > self.until:
            return False
        if self.node and self.node not in found.nodes:
            return False
        if self.actor and not any(self.actor.lower() in a.lower() for a in found.actors):
            return False
        if self.text:
            needle = self.text.lower()
            return any(needle in text.lower() for text in found.haystack)
        return True


class _Folder:
    """Folds goal, confirmation and effect events into search records, one event at a time."""

    def __init__(self) -> None:
        self.found: dict[str, Found] = {}

    def _touch(self, found: Found, logged: LoggedEvent) -> None:
        meta = logged.event.meta
        found.actors.add(str(meta.actor))
        found.nodes.add(meta.node_id)
        found.updated_at = aware(logged.event.timestamp)
        found.position = logged.position

    def _new(self, kind: str, ident: str, goal_id: str, logged: LoggedEvent, **kw: Any) -> Found:
        when = aware(logged.event.timestamp)
        found = Found(kind, ident, goal_id, created_at=when, updated_at=when, position=0, **kw)
        self.found[ident] = found
        return found

    def offer(self, logged: LoggedEvent) -> None:
        event = logged.event
        ident = str(logged.originator_id)
        if isinstance(event, Goal.Submitted | Confirmation.Requested | Effect.Started):
            found = self._create(logged)
        elif isinstance(event, Goal.DecisionRecorded):
            found = self._new(
                "decision",
                str(event.decision_id),
                ident,
                logged,
                status="recorded",
                title=f"{event.action.get('name', '?')} by {event.model}",
                haystack=[
                    event.prompt,
                    event.raw_output,
                    json.dumps(plain(event.action)),
                    event.model,
                ],
            )
            self._touch(found, logged)
            if ident in self.found:
                self._touch(self.found[ident], logged)
            return
        elif ident in self.found:
            found = self.found[ident]
            self._change(found, event)
        else:
            return
        self._touch(found, logged)

    def _create(self, logged: LoggedEvent) -> Found:
        event = logged.event
        ident = str(logged.originator_id)
        if isinstance(event, Goal.Submitted):
            return self._new(
                "goal", ident, ident, logged, status="submitted", title=event.text,
                haystack=[event.text, event.submitted_by],
            )  # fmt: skip
        if isinstance(event, Confirmation.Requested):
            params = json.dumps(plain(event.parameters), sort_keys=True)
            return self._new(
                "confirmation", ident, str(event.goal_id), logged, status="pending",
                hazard=event.hazard, title=f"{event.action} {params}",
                haystack=[event.action, params],
            )  # fmt: skip
        params = json.dumps(plain(event.parameters), sort_keys=True)
        return self._new(
            "effect", ident, str(event.goal_id), logged, status="started",
            title=f"{event.action} {params}", haystack=[event.action, params],
        )  # fmt: skip

    def _change(self, found: Found, event: Any) -> None:
        status = event_type(get_topic(type(event))).split(".")[-1]
        statuses = {
            "Planned": "planned",
            "Completed": "completed",
            "Failed": "failed",
            "Cancelled": "cancelled",
            "Granted": "granted",
            "Denied": "denied",
            "Expired": "expired",
            "AttemptStarted": "started",
            "Succeeded": "succeeded",
            "OutcomeUnknown": "outcome_unknown",
            "Reconciled": "reconciled",
        }
        found.status = statuses.get(status, found.status)
        for key, value in event_fields(event).items():
            if isinstance(value, str):
                found.haystack.append(value)
            elif isinstance(value, dict | list):
                found.haystack.append(json.dumps(plain(value), sort_keys=True))
            if key in ("granted_by", "denied_by", "cancelled_by", "reconciled_by"):
                found.actors.add(str(value))


def _search_topics(kinds: Iterable[str]) -> list[str]:
    wanted = {"Goal" if k == "decision" else k.capitalize() for k in kinds}
    return topics_for(sorted(wanted))


def search(
    store: Store, criteria: Criteria, progress: ProgressFn = no_progress
) -> tuple[list[Found], str]:
    """Matching records, newest first, and where they were found ("log" or "views+log")."""
    wanted = criteria.effective()
    if not wanted.kinds:
        return [], "none"
    topics = _search_topics(wanted.kinds)
    head = store.head()
    folder = _Folder()
    source = "log"
    candidates = _search_candidates(store, wanted) if store.view is not None else None
    if candidates is None:
        for logged in store.events(0, head, topics, progress):
            folder.offer(logged)
    else:
        source = "views+log"
        assert store.view is not None
        for batch in store.pages(store.view.position, head, topics, progress):
            candidates.update(UUID(str(n.originator_id)) for n in batch)
        for aggregate_id in sorted(candidates):
            for notification in store.table.events_of(aggregate_id, upto=head):
                folder.offer(store.decode(notification))
    found = [f for f in folder.found.values() if wanted.accepts(f)]
    if wanted.text:
        found += _matching_their_goal(store, folder, wanted, head, found)
    found.sort(key=lambda f: (f.created_at, f.position), reverse=True)
    return found[: wanted.limit], source


def _matching_their_goal(
    store: Store, folder: _Folder, wanted: Criteria, head: int, matched: list[Found]
) -> list[Found]:
    """Decisions, confirmations and effects whose own text does not match but whose goal's does
    ("front door" finds the confirmation of the goal "unlock the front door")."""
    assert wanted.text is not None
    needle = wanted.text.lower()
    others = replace(wanted, text=None)
    seen = {id(f) for f in matched}
    texts: dict[str, str | None] = {
        f.ident: f.title for f in folder.found.values() if f.kind == "goal"
    }
    extra = []
    for found in folder.found.values():
        if found.kind == "goal" or id(found) in seen or not others.accepts(found):
            continue
        if found.goal_id not in texts:
            texts[found.goal_id] = _goal_text(store, found.goal_id, head)
        text = texts[found.goal_id]
        if text is not None and needle in text.lower():
            extra.append(found)
    return extra


def _goal_text(store: Store, goal_id: str, head: int) -> str | None:
    try:
        ident = UUID(goal_id)
    except ValueError:
        return None
    for notification in store.table.events_of(ident, upto=head, limit=1):
        event = store.decode(notification).event
        return event.text if isinstance(event, Goal.Submitted) else None
    return None


def _search_candidates(store: Store, wanted: Criteria) -> set[UUID] | None:
    """Aggregates the views say may match, up to the view's position; None if they cannot say."""

    assert store.view is not None
    columns = {
        "goal": (goals.c.id, goals.c.submitted_at, goals.c.status),
        "decision": (decisions.c.goal_id, decisions.c.recorded_at, None),
        "confirmation": (confirmations.c.id, confirmations.c.requested_at, confirmations.c.status),
        "effect": (effects.c.id, effects.c.started_at, effects.c.status),
    }
    found: set[UUID] = set()
    try:
        with store.view.engine.connect() as conn:
            for kind in wanted.kinds:
                ident, created, status = columns[kind]
                query = select(ident)
                if wanted.status is not None and status is not None:
                    query = query.where(status == wanted.status)
                if kind == "confirmation" and wanted.hazard:
                    query = query.where(confirmations.c.hazard == wanted.hazard)
                # Times are compared again exactly on the events; the view only narrows.
                if wanted.since is not None:
                    query = query.where(created >= wanted.since - timedelta(seconds=1))
                if wanted.until is not None:
                    query = query.where(created <= wanted.until + timedelta(seconds=1))
                found.update(UUID(str(v)) for v in conn.execute(query).scalars())
    except SQLAlchemyError as error:
        store.notes.append(f"views unusable for search ({type(error).__name__}): scanning")
        return None
    return found
