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
