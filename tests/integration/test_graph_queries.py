"""A goal's provenance subgraph from the graph view, on ladybug and FalkorDB, in each format."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore
from adapters.chunking import chunk_id
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from domain.goal import Goal
from projections.graph import entity_id
from projections.graph_queries import (
    GoalNotInGraph,
    GraphFormat,
    goal_provenance,
    provenance_json,
    render_provenance,
)
from tests.support.graph_log import (
    DIGEST,
    DOOR_TEXT,
    Log,
    confirmed_effect,
    decide,
    ent,
    ingest,
    rel,
    view,
)


@pytest.fixture(params=["ladybug", "falkordb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    graph: GraphStore
    if request.param == "ladybug":
        graph = LadybugGraphStore(tmp_path / "graph")
    else:
        url = request.getfixturevalue("falkordb_url")
        graph = FalkorDBGraphStore(url, prefix=f"t{uuid.uuid4().hex[:6]}_")
    yield graph
    graph.close()


def two_goals(log: Log, blobs: FileBlobStore) -> tuple[Goal, Goal, uuid.UUID]:
    """Two goals whose decisions used the same first chunk of the door manual."""
    doc = ingest(
        log,
        blobs,
        DOOR_TEXT,
        [ent("Acme", "ORG", 0), ent("front door", "PLACE", 0), ent("back door", "PLACE", 2)],
        [rel("Acme", "front door", "MAKES_LOCK_FOR", 0)],
    )
    chunk = str(chunk_id(doc.id, 0, DIGEST))
    first = Goal.submit(uuid.uuid4(), 'open the "front" door', "alice", 5, log.ctx)
    log.record(first)
    decision = decide(log, first, [chunk])
    confirmed_effect(log, first, decision)
    other = Goal.submit(uuid.uuid4(), "check the lock", "alice", 5, log.ctx)
    log.record(other)
    decide(log, other, [chunk])
    return first, other, doc.id


def test_the_provenance_holds_the_goal_its_story_and_its_evidence_only(
    store: GraphStore, tmp_path: Path
) -> None:
    log, blobs = Log(), FileBlobStore(tmp_path / "blobs")
    first, other, doc = two_goals(log, blobs)
    view(store, blobs).apply(log.events)

    sub = goal_provenance(store, str(first.id))

    labels = sorted(n.label for n in sub.nodes)
    assert labels == sorted(
        ["Goal", "Decision", "Confirmation", "Effect", "Chunk", "Document", "Entity", "Entity"]
    )
    assert str(other.id) not in sub.node_ids
    assert str(chunk_id(doc, 2, DIGEST)) not in sub.node_ids  # the document's other chunks
    assert entity_id("PLACE", "back door") not in sub.node_ids
    assert {e.type for e in sub.edges} == {
        "DECIDED",
        "REQUESTED",
        "AUTHORISED",
        "USED_CONTEXT",
        "HAS_CHUNK",
        "MENTIONS",
        "RELATES",
    }
    assert all(n.event_id and n.position > 0 for n in sub.nodes)
    body = provenance_json(str(first.id), sub)
    assert body["goal_id"] == str(first.id)
    assert {n["id"] for n in body["nodes"]} == sub.node_ids
    json.dumps(body)


def test_mermaid_and_dot_name_every_node_and_edge_with_quotes_escaped(
    store: GraphStore, tmp_path: Path
) -> None:
    log, blobs = Log(), FileBlobStore(tmp_path / "blobs")
    first, _, _ = two_goals(log, blobs)
    view(store, blobs).apply(log.events)
    sub = goal_provenance(store, str(first.id))

    mermaid = render_provenance(str(first.id), sub, GraphFormat.MERMAID)
    dot = render_provenance(str(first.id), sub, GraphFormat.DOT)

    assert mermaid.startswith("flowchart LR\n")
    assert mermaid.count(" -->|") == len(sub.edges)
    assert "Goal: open the #quot;front#quot; door" in mermaid
    assert '-->|"RELATES MAKES_LOCK_FOR"|' in mermaid
    assert dot.startswith("digraph provenance {") and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == len(sub.edges)
    assert 'label="Goal: open the \\"front\\" door"' in dot
    assert json.loads(render_provenance(str(first.id), sub, GraphFormat.JSON))["nodes"]


def test_an_unknown_goal_or_a_node_that_is_no_goal_is_not_in_the_graph(
    store: GraphStore, tmp_path: Path
) -> None:
    log, blobs = Log(), FileBlobStore(tmp_path / "blobs")
    _, _, doc = two_goals(log, blobs)
    view(store, blobs).apply(log.events)

    with pytest.raises(GoalNotInGraph):
        goal_provenance(store, str(uuid.uuid4()))
    with pytest.raises(GoalNotInGraph):
        goal_provenance(store, str(doc))
