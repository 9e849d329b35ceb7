"""The object, vector and graph views run as registered projections of an embedded Janus:
fed from the log, searchable, rebuilt blue/green, verified, with failed documents in status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from adapters.chunking import chunk_id
from bootstrap.agent import build_retriever
from bootstrap.container import Janus
from bootstrap.process import JanusProcess
from commands import models as m
from projections.knowledge import KnowledgeRunner
from projections.runner import ProjectionStalled
from projections.search import SearchFilters
from tests.servers import wait_until
from tests.support.agent import goal, make_agent, settle, submit
from tests.support.commands import as_alice
from tests.support.documents import OPERATOR, ingest, retract
from tests.support.knowledge import knowledge_janus

CAT = "The cat sits on the mat and purrs.\n\n" * 30
MARKET = "Shares fell sharply when the market opened on Monday.\n\n" * 20


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[Janus]:
    with knowledge_janus(tmp_path / "janus") as janus:
        yield janus


def run(janus: Janus, name: str) -> KnowledgeRunner:
    view = janus.knowledge_views[name]
    view.catch_up()
    return view


def test_documents_become_searchable_chunks_with_citations(janus: Janus) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    ingest(janus, MARKET, "file:///notes/market.txt")
    vector = run(janus, "vector")

    [hit] = janus.knowledge.search().search("cat on the mat", k=1)

    assert hit.document_id == cat
    assert hit.citation.source == "file:///notes/cat.txt"
    assert CAT[hit.citation.char_offset :].startswith(hit.text)
    assert vector.status().position == janus.reader.head()
    assert vector.status().lag == 0


def test_search_filters_by_document_and_source(janus: Janus) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    market, _ = ingest(janus, MARKET, "file:///notes/market.txt")
    run(janus, "vector")
    search = janus.knowledge.search()

    only_market = search.search("cat on the mat", k=5, filters=SearchFilters(document_id=market))
    by_source = search.search("shares", k=5, filters=SearchFilters(source="file:///notes/cat.txt"))

    assert only_market and {h.document_id for h in only_market} == {market}
    assert by_source and {h.document_id for h in by_source} == {cat}


def test_a_retracted_document_leaves_search(janus: Janus) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    ingest(janus, MARKET, "file:///notes/market.txt")
    run(janus, "vector")
    retract(janus, cat)
    run(janus, "vector")

    hits = janus.knowledge.search().search("cat on the mat", k=10)

    assert hits and cat not in {h.document_id for h in hits}


def test_a_document_without_text_is_listed_as_failed_and_does_not_stall(janus: Janus) -> None:
    broken, _ = ingest(janus, b"\xff\xfe\x00binary", "file:///bad.bin")
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")

    for name in ("objects", "vector"):
        status = run(janus, name).status()
        assert status.state == "running"
        assert status.position == janus.reader.head()
        assert [doc for doc, _ in status.failed_documents] == [str(broken)]
    assert {h.document_id for h in janus.knowledge.search().search("cat", k=3)} == {cat}


def test_rebuild_switches_to_a_new_generation_and_drops_the_old(janus: Janus) -> None:
    ingest(janus, CAT, "file:///notes/cat.txt")
    vector = run(janus, "vector")
    index = janus.knowledge.index
    first = index.alias_target("chunks")
    before = sorted(p.id for p in index.points(first or ""))
    ingest(janus, MARKET, "file:///notes/market.txt")

    result = vector.rebuild()

    assert result.replaced == first and result.target != first
    assert index.alias_target("chunks") == result.target
    assert first not in index.collections()
    after = {p.id for p in index.points(result.target)}
    assert set(before) < after
    position, drift = vector.verify()
    assert position == janus.reader.head() and drift.clean


@pytest.mark.parametrize("name", ["objects", "vector", "graph"])
def test_each_view_rebuilds_and_verifies_clean(janus: Janus, name: str) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    ingest(janus, MARKET, "file:///notes/market.txt")
    retract(janus, cat)
    view = run(janus, name)
    assert view.verify()[1].clean

    result = view.rebuild()

    assert result.generation == 2
    position, drift = view.verify()
    assert drift.clean and position == janus.reader.head()
    assert view.status().generation == 1 or view.status().position == position


def test_verify_finds_a_point_the_log_does_not_imply(janus: Janus) -> None:
    ingest(janus, CAT, "file:///notes/cat.txt")
    vector = run(janus, "vector")
    index = janus.knowledge.index
    live = index.alias_target("chunks") or ""
    [point] = list(index.points(live, with_vectors=True))[:1]
    index.delete(live, [point.id])

    _, drift = vector.verify()

    assert drift.missing == [point.id]  # type: ignore[attr-defined]


def test_the_real_model_finds_the_document_closest_in_meaning(tmp_path: Path) -> None:
    with knowledge_janus(tmp_path / "real", embedding_model="all-MiniLM-L6-v2") as janus:
        rug, _ = ingest(janus, "The feline dozed on the rug all afternoon.", "file:///rug.txt")
        ingest(janus, "Stock markets dropped after the earnings report.", "file:///stocks.txt")
        ingest(janus, "The recipe calls for flour, sugar and two eggs.", "file:///cake.txt")
        run(janus, "vector")

        [best] = janus.knowledge.search().search("a cat sleeping on a carpet", k=1)

    assert best.document_id == rug  # no word in common: only the meaning matches


def test_the_agent_retrieves_chunks_whose_ids_are_point_ids(janus: Janus) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    run(janus, "vector")
    run(janus, "graph")  # both views run here: the retriever is hybrid, as fresh as the older
    retriever = build_retriever(janus)

    found = retriever.retrieve("where does the cat sit", limit=2)

    digest = janus.knowledge.embedder.digest
    chunk_ids = {str(chunk_id(cat, index, digest)) for index in range(20)}
    assert found.items and set(found.ids) <= chunk_ids
    assert "cat.txt" in found.items[0].text
    assert found.position == janus.reader.head()


def test_a_decision_records_the_hybrid_hits_it_quoted_as_its_context(janus: Janus) -> None:
    ingest(janus, CAT, "file:///notes/cat.txt")
    ingest(janus, MARKET, "file:///notes/market.txt")
    vector, graph = run(janus, "vector"), run(janus, "graph")
    text = "where does the cat sit"
    hits = janus.knowledge.hybrid().search(text, 6)  # what the agent's retriever asks for
    expected = [hit.id for hit in hits if hit.kind == "chunk"][:3]
    agent = make_agent(janus)
    goal_id = submit(janus, text)

    settle(janus, agent)
    agent.close()

    decision = goal(janus, goal_id).decisions[0]
    assert decision.context_ids == expected
    assert decision.context_position == min(vector.position, graph.position) > 0
    assert "from cat.txt (vector" in decision.prompt  # quoted with how each chunk was found
    # The graph view links the decision to the chunks it used: hybrid search now reaches it.
    run(janus, "graph")
    again = janus.knowledge.hybrid().search(text, 20)
    [found] = [hit for hit in again if hit.id == str(decision.decision_id)]
    assert {path[-1].via for path in found.paths} == {"USED_CONTEXT"}


@pytest.mark.parametrize(
    "settings",
    [{"runtime_views": "objects,vector"}, {"graph_url": "falkor://127.0.0.1:9"}],
    ids=["graph-not-run-here", "graph-unreachable"],
)
def test_without_the_graph_view_the_agent_retrieves_by_vector_search(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    with knowledge_janus(tmp_path / "janus", **settings) as janus:
        ingest(janus, CAT, "file:///notes/cat.txt")
        run(janus, "vector")

        found = build_retriever(janus).retrieve("where does the cat sit", limit=2)

        assert len(found.items) == 2
        assert found.items[0].text.startswith("from cat.txt (chunk ")  # the vector retriever's
        assert found.position == janus.knowledge_views["vector"].position


def test_the_all_in_one_process_keeps_the_knowledge_views_current(janus: Janus) -> None:
    process = JanusProcess(janus, poll_interval=0.05)
    process.start()
    try:
        cat, position = ingest(janus, CAT, "file:///notes/cat.txt")
        for view in janus.knowledge_views.values():
            wait_until(lambda view=view: view.position >= position, timeout=60)
        [hit] = janus.knowledge.search().search("cat on the mat", k=1)
        assert hit.document_id == cat
        roles = {name for name in process.roles if name.startswith("projections:")}
        assert roles == {"projections:objects", "projections:vector", "projections:graph"}
    finally:
        process.stop()


def test_a_missing_blob_stalls_the_view_visibly_until_retried(janus: Janus) -> None:
    data = CAT.encode()
    stored = janus.knowledge.blobs.put(data, "text/plain")
    janus.knowledge.blobs.delete(stored.key)  # the log will name bytes that are not there
    missing = janus.commands.register_document(
        m.RegisterDocument(
            source_uri="file:///gone.txt",
            content_type="text/plain",
            sha256=stored.sha256,
            size_bytes=stored.size,
        ),
        OPERATOR,
    )
    ingest(janus, MARKET, "file:///notes/market.txt")
    vector = janus.knowledge_views["vector"]

    with pytest.raises(ProjectionStalled):
        vector.catch_up()
    status = vector.status()
    assert status.state == "stalled" and status.error_position == missing.position
    assert "BlobNotFound" in (status.error or "")

    janus.knowledge.blobs.put(data, "text/plain")
    vector.retry()
    assert vector.catch_up() == janus.reader.head()
    assert vector.verify()[1].clean


def test_a_finished_goal_has_an_audit_bundle_equal_after_a_rebuild(janus: Janus) -> None:
    done = janus.commands.submit_goal(m.SubmitGoal(text="water the plants"), as_alice())
    goal_id = done.aggregate_id
    janus.commands.record_plan(m.RecordPlan(goal_id=goal_id, steps=["open the tap"]), as_alice())
    ingest(janus, CAT, "file:///notes/cat.txt")
    waiting = janus.commands.submit_goal(m.SubmitGoal(text="feed the cat"), as_alice())
    finished = janus.commands.complete_goal(
        m.CompleteGoal(goal_id=goal_id, summary="watered"), as_alice()
    )
    view = run(janus, "objects")
    blobs = janus.knowledge.blobs
    live = view.generations.live()

    bundle = blobs.get(f"{live}/goals/{goal_id}.json")
    events = json.loads(bundle)["events"]
    assert [e["type"] for e in events] == ["Goal.Submitted", "Goal.Planned", "Goal.Completed"]
    assert events[-1]["position"] == finished.position
    assert blobs.stat(f"{live}/goals/{goal_id}.json").position == finished.position
    assert not blobs.exists(f"{live}/goals/{waiting.aggregate_id}.json")

    result = view.rebuild()

    assert blobs.get(f"{result.target}/goals/{goal_id}.json") == bundle
    assert view.verify()[1].clean
    tampered = json.loads(bundle) | {"outcome": "flooded"}
    blobs.put_json(
        f"{result.target}/goals/{goal_id}.json",
        tampered,
        event_id=uuid4(),
        position=finished.position,
    )
    assert view.verify()[1].changed == [goal_id]  # type: ignore[attr-defined]
