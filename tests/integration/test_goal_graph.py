"""`GET /v1/goals/{id}/graph`: a goal's provenance from the graph view over real HTTP, on both
event stores, with the document extracted by the rules twin and the graph built from the log."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from adapters.chunking import chunk_id
from adapters.extraction import PlainTextExtractor
from bootstrap.container import Janus
from bootstrap.knowledge import build_blob_store, chunk_spec
from commands.extraction import EntityExtraction
from projections.graph import entity_id
from tests.support.api import DECISION_BODY, Api, is_problem, serve_api
from tests.support.extraction import CountingEntityModel, build_graph_view, ingest_text

MANUAL = "The front door has a smart lock made by Acme Ltd. Alice Smith fitted it."


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def build_graph(janus: Janus) -> None:
    """Entities extracted by the rules twin, then the graph view caught up with the log."""
    extraction = EntityExtraction(
        janus.app,
        janus.commands.runner,
        CountingEntityModel(),
        build_blob_store(janus.settings),
        PlainTextExtractor(),
        chunk_spec(janus.settings),
    )
    while extraction.run_once():
        pass
    build_graph_view(janus)


def test_a_goal_graph_comes_as_json_mermaid_or_dot(api: Api, janus: Janus) -> None:
    doc = ingest_text(janus, build_blob_store(janus.settings), MANUAL, "file:///manual.txt")
    chunk = str(chunk_id(doc, 0, janus.knowledge.embedder.digest))
    goal = api.submit_goal("unlock the front door")
    decided = api.post(
        f"/v1/goals/{goal['id']}/decisions", json={**DECISION_BODY, "context_ids": [chunk]}
    )
    assert decided.status_code == 202, decided.text
    build_graph(janus)

    as_json = api.get(f"/v1/goals/{goal['id']}/graph")
    mermaid = api.get(f"/v1/goals/{goal['id']}/graph", params={"format": "mermaid"})
    dot = api.get(f"/v1/goals/{goal['id']}/graph", params={"format": "dot"})

    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    labels = {n["label"] for n in body["nodes"]}
    assert labels == {"Goal", "Decision", "Confirmation", "Chunk", "Document", "Entity"}
    assert entity_id("ORG", "Acme Ltd") in {n["id"] for n in body["nodes"]}
    assert all(e["event_id"] and e["position"] > 0 for e in body["edges"])
    assert mermaid.headers["content-type"].startswith("text/vnd.mermaid")
    assert mermaid.text.startswith("flowchart LR") and "USED_CONTEXT" in mermaid.text
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.startswith("digraph provenance {")


def test_an_unknown_goal_an_unbuilt_graph_and_a_bad_format_are_problems(
    api: Api, janus: Janus
) -> None:
    goal = api.submit_goal("unlock the front door")

    unbuilt = api.get(f"/v1/goals/{goal['id']}/graph")
    build_graph(janus)
    unknown = api.get(f"/v1/goals/{uuid4()}/graph")
    bad = api.get(f"/v1/goals/{goal['id']}/graph", params={"format": "png"})

    assert is_problem(unbuilt, 404, "not-found") and "not been built" in unbuilt.json()["detail"]
    assert is_problem(unknown, 404, "not-found")
    assert is_problem(bad, 422, "validation-error")
    assert bad.json()["errors"][0]["loc"] == ["query", "format"]


def test_min_position_waits_for_the_graph_view_to_hold_the_goal(api: Api, janus: Janus) -> None:
    build_graph(janus)
    goal = api.submit_goal("lock the back door")
    path = f"/v1/goals/{goal['id']}/graph"

    before = api.get(path)  # the graph view has not applied the new goal yet
    fresh = api.get(path, params={"min_position": goal["position"]})
    ahead = api.get(path, params={"min_position": janus.reader.head() + 100})

    assert is_problem(before, 404, "not-found")
    assert fresh.status_code == 200, fresh.text
    assert goal["id"] in {n["id"] for n in fresh.json()["nodes"]}
    assert is_problem(ahead, 422, "validation-error")
    assert ahead.json()["errors"][0]["loc"] == ["query", "min_position"]
