"""Hybrid retrieval over the vector view (embedded Qdrant, hashing embedder) and the graph view
(ladybug), both built from the same log stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore
from adapters.chunking import chunk_id
from adapters.embeddings import HashingEmbedder
from adapters.extraction import PlainTextExtractor
from adapters.graph_ladybug import LadybugGraphStore
from adapters.vectors import QdrantVectorIndex
from domain.goal import Goal
from projections.graph import GraphProjection
from projections.hybrid import HybridHit, hybrid_search
from projections.vector import VectorProjection
from tests.support.graph_log import CHUNKING, Log, decide, ent, ingest

EMBEDDER = HashingEmbedder()
MANUAL = (
    "The front door lock was fitted by Alice Smith.\n\n"
    "Its battery is changed every spring by the caretaker."
)
HEATER = "Alice Smith also repaired the garage heater last winter."


@pytest.fixture
def views(tmp_path: Path) -> Iterator[tuple[QdrantVectorIndex, LadybugGraphStore, Log, dict]]:
    log, blobs = Log(), FileBlobStore(tmp_path / "blobs")
    manual = ingest(log, blobs, MANUAL, [ent("Alice Smith", "PERSON", 0)])
    heater = ingest(
        log, blobs, HEATER, [ent("Alice Smith", "PERSON", 0)], source="file:///heater.txt"
    )
    goal = Goal.submit(uuid.uuid4(), "change the door battery", "alice", 5, log.ctx)
    log.record(goal)
    first = str(chunk_id(manual.id, 0, EMBEDDER.digest))
    decision = decide(log, goal, [first])
    index = QdrantVectorIndex(path=tmp_path / "qdrant")
    graph = LadybugGraphStore(tmp_path / "graph")
    vector = VectorProjection(index, EMBEDDER, blobs, PlainTextExtractor(), CHUNKING)
    vector.start()
    vector.apply(log.events)
    projection = GraphProjection(graph, blobs, PlainTextExtractor(), EMBEDDER.digest, CHUNKING)
    projection.start()
    projection.apply(log.events)
    ids = {
        "first": first,
        "second": str(chunk_id(manual.id, 1, EMBEDDER.digest)),
        "heater": str(chunk_id(heater.id, 0, EMBEDDER.digest)),
        "decision": str(decision.decision_id),
        "collection": vector.collection,
    }
    yield index, graph, log, ids
    graph.close()
    index.close()


def search(views: tuple, query: str, **options: object) -> list[HybridHit]:
    index, graph, _, ids = views
    return hybrid_search(index, ids["collection"], EMBEDDER, graph, query, **options)  # type: ignore[arg-type]


def route(hit: HybridHit) -> list[list[tuple[str, str | None]]]:
    return [[(s.label, s.via) for s in path] for path in hit.paths]


def test_the_nearest_chunk_leads_to_its_neighbour_shared_entities_and_decisions(
    views: tuple,
) -> None:
    ids = views[3]

    hits = search(views, "front door lock fitted", k=5, seeds=1)

    by_id = {h.id: h for h in hits}
    assert hits[0].id == ids["first"] and hits[0].vector_rank == 0
    assert route(hits[0]) == [[("Chunk", "VECTOR")]]
    assert route(by_id[ids["second"]]) == [[("Chunk", "VECTOR"), ("Chunk", "NEXT")]]
    assert route(by_id[ids["heater"]]) == [
        [("Chunk", "VECTOR"), ("Entity", "MENTIONS"), ("Chunk", "MENTIONS")]
    ]
    assert by_id[ids["heater"]].paths[0][1].name == "Alice Smith"
    assert by_id[ids["heater"]].text == HEATER
    decision = by_id[ids["decision"]]
    assert decision.kind == "decision"
    assert route(decision) == [[("Chunk", "VECTOR"), ("Decision", "USED_CONTEXT")]]
    # Found by both rankings, the seed outranks what only the graph reached.
    assert all(h.score < hits[0].score for h in hits[1:])
    assert search(views, "front door lock fitted", k=5, seeds=1) == hits


def test_without_a_graph_the_vector_ranking_stands_alone(views: tuple, tmp_path: Path) -> None:
    index, _, _, ids = views
    empty = LadybugGraphStore(tmp_path / "no-graph")
    try:
        hits = hybrid_search(index, ids["collection"], EMBEDDER, empty, "garage heater", k=3)
    finally:
        empty.close()

    assert hits[0].id == ids["heater"]
    assert all(h.graph_rank is None and h.vector_rank is not None for h in hits)
    assert [h.vector_rank for h in hits] == sorted(h.vector_rank or 0 for h in hits)
