"""POST /v1/search over real HTTP: chunks with citations, read-your-writes, filters, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from domain.api_key import Role
from tests.support.api import Api, is_problem, serve_api
from tests.support.documents import ingest
from tests.support.knowledge import knowledge_janus

CAT = "The cat sits on the mat and purrs.\n\n" * 30
MARKET = "Shares fell sharply when the market opened on Monday.\n\n" * 20


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[Janus]:
    with knowledge_janus(tmp_path / "janus") as janus:
        yield janus


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def test_a_viewer_finds_a_document_it_just_registered(api: Api, janus: Janus) -> None:
    cat, position = ingest(janus, CAT, "file:///notes/cat.txt")
    ingest(janus, MARKET, "file:///notes/market.txt")

    response = api.post(
        "/v1/search",
        role=Role.VIEWER,
        json={"query": "cat on the mat", "k": 2, "min_position": position},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["position"] >= position
    best = body["hits"][0]
    assert best["document_id"] == str(cat)
    assert best["citation"]["source"] == "file:///notes/cat.txt"
    assert best["citation"]["title"] == "cat.txt"
    start = best["citation"]["char_offset"]
    assert CAT[start:].startswith(best["text"])


def test_filters_narrow_the_hits(api: Api, janus: Janus) -> None:
    ingest(janus, CAT, "file:///notes/cat.txt")
    market, position = ingest(janus, MARKET, "file:///notes/market.txt")

    by_document = api.post(
        "/v1/search",
        role=Role.VIEWER,
        json={"query": "cat", "document_id": str(market), "min_position": position},
    ).json()
    in_the_future = api.post(
        "/v1/search",
        role=Role.VIEWER,
        json={"query": "cat", "from": "2999-01-01T00:00:00Z", "min_position": position},
    ).json()

    assert {h["document_id"] for h in by_document["hits"]} == {str(market)}
    assert in_the_future["hits"] == []


def test_bad_input_is_a_problem_naming_the_field(api: Api) -> None:
    response = api.post("/v1/search", role=Role.VIEWER, json={"query": "cat", "k": 0})

    assert is_problem(response, 422)
    assert response.json()["errors"][0]["loc"][-1] == "k"


def test_search_needs_a_key(api: Api) -> None:
    assert api.client.post("/v1/search", json={"query": "cat"}).status_code == 401


def test_hybrid_hits_carry_their_paths_of_evidence(api: Api, janus: Janus) -> None:
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    market, position = ingest(janus, MARKET, "file:///notes/market.txt")

    response = api.post(
        "/v1/search",
        role=Role.VIEWER,
        json={"query": "cat on the mat", "k": 5, "mode": "hybrid", "min_position": position},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    # Waited for both views: the graph view holds the chunks the hits name.
    assert body["mode"] == "hybrid"
    assert janus.knowledge_views["graph"].position >= position
    assert body["position"] >= position
    best = body["hits"][0]
    assert best["document_id"] == str(cat) and best["vector_rank"] == 0
    assert best["paths"][0] == [{"id": best["id"], "label": "Chunk", "via": "VECTOR", "name": None}]
    # The graph view led on from the seeds to their neighbouring chunks.
    reached = [h for h in body["hits"] if any(len(p) > 1 for p in h["paths"])]
    assert reached and all(h["graph_rank"] is not None for h in reached)
    assert any("next" in h["via"].split(", ") for h in reached)
    assert {h["document_id"] for h in body["hits"]} == {str(cat)}

    only_market = api.post(
        "/v1/search",
        role=Role.VIEWER,
        json={"query": "cat", "k": 10, "mode": "hybrid", "document_id": str(market)},
    ).json()
    assert only_market["hits"] and {h["document_id"] for h in only_market["hits"]} == {str(market)}


def test_vector_mode_stays_the_default(api: Api, janus: Janus) -> None:
    _, position = ingest(janus, CAT, "file:///notes/cat.txt")

    body = api.post(
        "/v1/search", role=Role.VIEWER, json={"query": "cat", "min_position": position}
    ).json()

    assert body["mode"] == "vector" and "citation" in body["hits"][0]


def test_hybrid_without_a_reachable_graph_is_a_503_problem(tmp_path: Path) -> None:
    # Nothing listens on port 9: the graph view cannot be opened from here.
    with (
        knowledge_janus(tmp_path / "janus", graph_url="falkor://127.0.0.1:9") as janus,
        serve_api(janus) as api,
    ):
        ingest(janus, CAT, "file:///notes/cat.txt")
        janus.knowledge_views["vector"].catch_up()

        response = api.post("/v1/search", role=Role.VIEWER, json={"query": "cat", "mode": "hybrid"})
        vector = api.post("/v1/search", role=Role.VIEWER, json={"query": "cat"})

    assert is_problem(response, 503, "view-unavailable")
    assert "graph" in response.json()["detail"]
    assert vector.status_code == 200 and vector.json()["hits"]


def test_an_unknown_mode_is_a_problem_naming_the_field(api: Api) -> None:
    response = api.post("/v1/search", role=Role.VIEWER, json={"query": "cat", "mode": "graph"})

    assert is_problem(response, 422)
    assert response.json()["errors"][0]["loc"][-1] == "mode"
