"""The graph projection fed real domain events, on the embedded graph store and on FalkorDB, with
the file blob twin.

A list stands in for the notification log (tests/support/graph_log.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from adapters.blobs import BlobNotFound, FileBlobStore, blob_key_for
from adapters.chunking import chunk_id
from adapters.graph import GraphNode, GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from bench import graph as bench_graph
from domain.document import Document
from domain.goal import Goal
from domain.job import Job, JobFire, MisfirePolicy
from projections.graph import entity_id, relation_id
from tests.support.graph_log import (
    DIGEST,
    DOOR_TEXT,
    T0,
    Log,
    confirmed_effect,
    decide,
    ent,
    ingest,
    rel,
    view,
)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


@pytest.fixture(params=["ladybug", "falkordb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    graph: GraphStore
    if request.param == "ladybug":
        graph = LadybugGraphStore(tmp_path / "graph")
    else:
        # A key prefix per test: the FalkorDB server is shared by the session.
        url = request.getfixturevalue("falkordb_url")
        graph = FalkorDBGraphStore(url, prefix=f"t{uuid.uuid4().hex[:6]}_")
    yield graph
    graph.close()


def test_provenance_runs_from_goal_through_decision_and_confirmation_to_effect(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    doc = ingest(log, blobs, DOOR_TEXT, [ent("Acme", "ORG", 0)])
    first_chunk = str(chunk_id(doc.id, 0, DIGEST))
    goal = Goal.submit(uuid.uuid4(), "open the front door", "alice", 5, log.ctx)
    log.record(goal)
    decision = decide(log, goal, [first_chunk, "not-a-chunk"])
    confirmation, effect = confirmed_effect(log, goal, decision)
    projection = view(store, blobs)

    assert projection.apply(log.events) == len(log.events)

    [path] = store.paths("graph", str(goal.id), str(effect.id), max_depth=4)
    assert [n.label for n in path.nodes] == ["Goal", "Decision", "Confirmation", "Effect"]
    assert [e.type for e in path.edges] == ["DECIDED", "REQUESTED", "AUTHORISED"]
    granted = store.node("graph", str(confirmation.id))
    assert granted is not None and granted.properties["status"] == "granted"
    grant_event = log.events[-3]
    assert (granted.event_id, granted.position) == (
        str(grant_event.event.meta.event_id),
        grant_event.position,
    )
    [evidence] = store.paths("graph", str(effect.id), entity_id("ORG", "Acme"), max_depth=6)
    assert [n.label for n in evidence.nodes][-3:] == ["Decision", "Chunk", "Entity"]
    assert store.get_position("graph") == log.events[-1].position


def test_chunks_follow_each_other_and_mention_recorded_entities(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    doc = ingest(
        log,
        blobs,
        DOOR_TEXT,
        [ent("back door", "PLACE", 2), {"type": "X", "chunks": [0]}, ent("nowhere", "X", 7)],
    )

    view(store, blobs).apply(log.events)

    counts = store.counts("graph")
    assert counts.nodes == {"Document": 1, "Chunk": 3, "Entity": 1}
    assert counts.edges == {"HAS_CHUNK": 3, "NEXT": 2, "MENTIONS": 1}
    chunks = [str(chunk_id(doc.id, i, DIGEST)) for i in range(3)]
    # Two routes of two hops: along NEXT, and up to the document and down again.
    routes = store.paths("graph", chunks[0], chunks[2], max_depth=2)
    assert sorted(p.node_ids for p in routes) == sorted(
        [chunks, [chunks[0], str(doc.id), chunks[2]]]
    )
    assert store.export("graph").edge_keys >= {
        (chunks[2], "MENTIONS", entity_id("PLACE", "back door"))
    }


def test_a_replayed_batch_leaves_the_graph_as_one_application_did(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    ingest(log, blobs, DOOR_TEXT, [ent("Acme", "ORG", 0)])
    job = Job.schedule(
        uuid.uuid4(),
        "nightly",
        {"kind": "interval", "seconds": 60},
        {"name": "lock_doors"},
        MisfirePolicy.SKIP,
        0,
        1,
        log.ctx,
    )
    log.record(job)
    log.record(JobFire.fire(job.id, T0, False, log.ctx))
    once = view(store, blobs, "once")
    once.apply(log.events)

    crashed = view(store, blobs, "twice")
    crashed.apply(log.events)
    # A crash after the merges but before the position: the restarted view replays it all.
    store.set_position("twice", 0)
    restarted = view(store, blobs, "twice")
    assert restarted.apply(log.events) == len(log.events)
    assert restarted.apply(log.events) == 0

    assert store.export("twice") == store.export("once")
    assert store.counts("once").edges["FIRED"] == 1


def test_a_retraction_removes_chunks_and_orphaned_entities_only(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    kept = ingest(log, blobs, "Acme builds locks.", [ent("Acme", "ORG", 0)])
    doomed = ingest(
        log,
        blobs,
        "Acme and Globex make doors.",
        [ent("Acme", "ORG", 0), ent("Globex", "ORG", 0)],
    )
    projection = view(store, blobs)
    projection.apply(log.events)
    assert store.counts("graph").nodes["Entity"] == 2

    doomed.retract("withdrawn by the operator", log.ctx)
    log.record(doomed)
    projection.apply(log.events)

    exported = store.export("graph")
    assert entity_id("ORG", "Acme") in exported.node_ids
    assert entity_id("ORG", "Globex") not in exported.node_ids
    assert str(chunk_id(doomed.id, 0, DIGEST)) not in exported.node_ids
    assert str(chunk_id(kept.id, 0, DIGEST)) in exported.node_ids
    retracted = store.node("graph", str(doomed.id))
    assert retracted is not None and retracted.properties["status"] == "retracted"


def test_verify_finds_missing_unexpected_and_changed_nodes_and_edges(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    doc = ingest(log, blobs, DOOR_TEXT, [ent("Acme", "ORG", 0)])
    projection = view(store, blobs)
    projection.apply(log.events)
    assert projection.verify(log.events).clean
    chunks = [str(chunk_id(doc.id, i, DIGEST)) for i in range(3)]

    store.delete_nodes("graph", [chunks[2]])
    store.merge_nodes("graph", [GraphNode("stray", "Entity", "ev", 1)])
    document = store.node("graph", str(doc.id))
    assert document is not None
    store.merge_nodes("graph", [GraphNode(document.id, "Document", "ev", 1, {"status": "x"})])
    drift = projection.verify(log.events)

    assert drift.missing_nodes == [chunks[2]]
    assert drift.unexpected_nodes == ["stray"]
    assert drift.changed_nodes == [str(doc.id)]
    assert set(drift.missing_edges) == {
        (chunks[1], "NEXT", chunks[2]),
        (str(doc.id), "HAS_CHUNK", chunks[2]),
    }
    assert drift.unexpected_edges == drift.changed_edges == []
    assert "graph_verify" not in store.namespaces()


def test_the_graph_benchmark_projects_rebuilds_without_model_calls_and_searches(
    tmp_path: Path,
) -> None:
    store = LadybugGraphStore(tmp_path / "bench")
    try:
        result = bench_graph.measure(store, "ladybug", 2, Console(quiet=True), queries=3)
    finally:
        store.close()

    # Per document: 2 document events, 2 goal, 2 confirmation and 2 effect events.
    assert result.events == 2 * 8
    assert result.chunks > 2 and result.extraction_calls == result.chunks
    assert result.rebuild_model_calls == 0
    assert result.nodes > 2 * 8
    assert result.edges > 2 * 7
    assert min(result.projection_s, result.raw_s, result.rebuild_s) > 0
    assert result.hybrid_queries == 3 and result.hybrid_p95_ms >= result.hybrid_p50_ms > 0


def test_a_failed_batch_stops_the_view_and_leaves_no_buffered_writes_behind(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    ingest(log, blobs, "Acme builds locks.", [ent("Acme", "ORG", 0)])
    before = len(log.events)
    lost = Document.register(
        uuid.uuid4(),
        "file:///lost",
        "lost",
        "text/plain",
        "f" * 64,
        1,
        blob_key_for("f" * 64),
        log.ctx,
    )
    log.record(lost)
    projection = view(store, blobs)
    projection.apply(log.events[:before])

    with pytest.raises(BlobNotFound):
        projection.apply(log.events)
    assert store.get_position("graph") == before

    # The operator parks the poison event; the next batch must not carry its half-done writes.
    later = log.record(Goal.submit(uuid.uuid4(), "lock up", "alice", 5, log.ctx))
    assert projection.apply(later) == 1

    exported = store.export("graph")
    assert str(lost.id) not in exported.node_ids
    assert str(later[0].originator_id) in exported.node_ids


def test_the_graph_does_not_depend_on_how_the_log_is_batched(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    early = ingest(log, blobs, "Acme builds locks.", [ent("Acme", "ORG", 0)])
    goal = Goal.submit(uuid.uuid4(), "lock up", "alice", 5, log.ctx)
    log.record(goal)
    late_text = "Globex makes doors."
    late_id = uuid.uuid4()
    # A decision naming a chunk that is ingested only later: no edge, however the log is cut.
    decide(log, goal, [str(chunk_id(early.id, 0, DIGEST)), str(chunk_id(late_id, 0, DIGEST))])
    stored = blobs.put(late_text.encode(), "text/plain")
    late = Document.register(
        late_id, "file:///late", "late", "text/plain", stored.sha256, 1, stored.key, log.ctx
    )
    log.record(late)

    whole = view(store, blobs, "whole")
    whole.apply(log.events)
    one_by_one = view(store, blobs, "single")
    for logged in log.events:
        one_by_one.apply([logged])

    assert store.export("whole") == store.export("single")
    used = {e.target for e in store.export("whole").edges if e.type == "USED_CONTEXT"}
    assert used == {str(chunk_id(early.id, 0, DIGEST))}


def relates(store: GraphStore, namespace: str = "graph") -> dict[tuple[str, str], Any]:
    """Each RELATES edge's (source, target) with its type and the chunks stating it (STATES
    edges into the pair's Relation node, with their types)."""
    exported = store.export(namespace)
    states: dict[str, list[tuple[str, str]]] = {}
    for e in exported.edges:
        if e.type == "STATES":
            states.setdefault(e.target, []).append((e.source, str(e.properties["type"])))
    return {
        (e.source, e.target): (
            e.properties["type"],
            sorted(states.get(relation_id(e.source, e.target), [])),
        )
        for e in exported.edges
        if e.type == "RELATES"
    }


def test_relations_gather_evidence_across_documents_and_lose_it_with_each_retraction(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    acme, door = entity_id("ORG", "Acme"), entity_id("PLACE", "front door")
    first = ingest(
        log,
        blobs,
        DOOR_TEXT,
        [ent("Acme", "ORG", 0), ent("front door", "PLACE", 0)],
        [rel("Acme", "front door", "MAKES_LOCK_FOR", 0), rel("Acme", "nobody", "X", 0)],
    )
    second = ingest(
        log,
        blobs,
        "Acme fitted the front door. Bolt Ltd fitted the bolt.",
        [ent("acme", "ORG", 0), ent("Front Door", "PLACE", 0), ent("Bolt Ltd", "ORG", 0)],
        [rel("Acme", "Front door", "FITTED", 0), rel("Bolt Ltd", "Acme", "KNOWS", 0)],
        source="file:///fitting.txt",
    )
    first_chunk = str(chunk_id(first.id, 0, DIGEST))
    second_chunk = str(chunk_id(second.id, 0, DIGEST))
    bolt = entity_id("ORG", "Bolt Ltd")
    projection = view(store, blobs)
    projection.apply(log.events)

    assert relates(store) == {
        (acme, door): (
            "FITTED, MAKES_LOCK_FOR",
            sorted([(first_chunk, "MAKES_LOCK_FOR"), (second_chunk, "FITTED")]),
        ),
        (bolt, acme): ("KNOWS", [(second_chunk, "KNOWS")]),
    }
    assert projection.verify(log.events).clean

    second.retract("wrong document", log.ctx)
    log.record(second)
    projection.apply(log.events)
    # Bolt Ltd was only mentioned by the retracted document: it goes, and its relation with it.
    assert relates(store) == {(acme, door): ("MAKES_LOCK_FOR", [(first_chunk, "MAKES_LOCK_FOR")])}
    assert bolt not in store.export("graph").node_ids
    assert relation_id(bolt, acme) not in store.export("graph").node_ids
    assert projection.verify(log.events).clean

    first.retract("withdrawn", log.ctx)
    log.record(first)
    projection.apply(log.events)
    exported = store.export("graph")
    assert relates(store) == {}
    assert store.counts("graph").nodes == {"Document": 2}
    assert {e.type for e in exported.edges} == set()
    assert projection.verify(log.events).clean


def test_a_relation_between_surviving_entities_goes_when_its_only_evidence_is_retracted(
    log: Log, blobs: FileBlobStore, store: GraphStore
) -> None:
    ingest(log, blobs, "Acme and Globex.", [ent("Acme", "ORG", 0), ent("Globex", "ORG", 0)])
    doomed = ingest(
        log,
        blobs,
        "Acme bought Globex.",
        [ent("Acme", "ORG", 0), ent("Globex", "ORG", 0)],
        [rel("Acme", "Globex", "BOUGHT", 0)],
        source="file:///rumour.txt",
    )
    projection = view(store, blobs)
    projection.apply(log.events)
    assert len(relates(store)) == 1

    doomed.retract("a rumour", log.ctx)
    log.record(doomed)
    projection.apply(log.events)

    assert relates(store) == {}
    assert store.counts("graph").nodes == {"Document": 2, "Chunk": 1, "Entity": 2}
    assert projection.verify(log.events).clean
