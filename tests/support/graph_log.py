"""A notification log stand-in and domain stories for the graph view's tests.

A list stands in for the notification log, as far as a projection sees it: events with
positions, in order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.blobs import FileBlobStore
from adapters.chunking import ChunkSpec
from adapters.extraction import PlainTextExtractor
from adapters.graph import GraphStore
from domain.confirmation import Confirmation, HazardClass
from domain.document import Document
from domain.effect import Effect
from domain.goal import Decision, Goal
from domain.meta import Actor, ActorKind, CommandContext
from event_store.reader import LoggedEvent
from projections.graph import GraphProjection

CHUNKING = ChunkSpec(size=80, overlap=0)
DIGEST = "model-digest-1"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DOOR_TEXT = (
    "The front door has a smart lock made by Acme.\n\n"
    "To open it, ask the operator for a confirmation first.\n\n"
    "The back door is always locked at night."
)


class Log:
    """The notification log, as far as a projection sees it: events with positions, in order."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.ctx = CommandContext("cmd", "corr", "cmd", Actor(ActorKind.USER, "alice"), "test")

    def record(self, aggregate: Any) -> list[LoggedEvent]:
        new = [
            LoggedEvent(len(self.events) + i + 1, "", e.originator_id, e.originator_version, e)
            for i, e in enumerate(aggregate.collect_events())
        ]
        self.events += new
        return new


def view(store: GraphStore, blobs: FileBlobStore, namespace: str = "graph") -> GraphProjection:
    projection = GraphProjection(
        store, blobs, PlainTextExtractor(), DIGEST, CHUNKING, namespace=namespace
    )
    projection.start()
    return projection


def ent(name: str, kind: str, *chunks: int) -> dict[str, Any]:
    return {"name": name, "type": kind, "chunks": list(chunks)}


def rel(source: str, target: str, kind: str, chunk: int) -> dict[str, Any]:
    return {"source": source, "target": target, "type": kind, "chunk": chunk}


def ingest(
    log: Log,
    blobs: FileBlobStore,
    text: str,
    entities: list[dict[str, Any]],
    relations: list[dict[str, Any]] | None = None,
    source: str = "file:///door.txt",
) -> Document:
    stored = blobs.put(text.encode(), "text/plain")
    document = Document.register(
        uuid.uuid4(),
        source,
        source.rsplit("/", 1)[-1],
        "text/plain",
        stored.sha256,
        stored.size,
        stored.key,
        log.ctx,
    )
    document.record_entities("extractor-v1", "test", {}, [], entities, relations or [], log.ctx)
    log.record(document)
    return document


def decide(log: Log, goal: Goal, context: list[str]) -> Decision:
    decision = Decision(
        decision_id=uuid.uuid4(),
        model="rules",
        model_digest="rules-1",
        parameters={},
        prompt="open the door",
        context_ids=context,
        raw_output="{}",
        action={"name": "unlock_door"},
        timings={},
    )
    goal.record_decision(decision, log.ctx)
    log.record(goal)
    return decision


def confirmed_effect(log: Log, goal: Goal, decision: Decision) -> tuple[Confirmation, Effect]:
    """The decision's action confirmed by bob and carried out."""
    confirmation = Confirmation.request(
        uuid.uuid4(),
        goal.id,
        decision.decision_id,
        "unlock_door",
        {"door": "front"},
        HazardClass.HIGH,
        T0,
        T0 + timedelta(minutes=5),
        log.ctx,
    )
    log.record(confirmation)
    confirmation.grant("bob", T0 + timedelta(minutes=1), log.ctx)
    log.record(confirmation)
    effect = Effect.start(confirmation.id, goal.id, "unlock_door", {"door": "front"}, log.ctx)
    effect.succeed({"ok": True}, log.ctx)
    log.record(effect)
    return confirmation, effect
