"""``janus search`` end to end on the embedded default: a table or JSON with citations, and one
clear line when another process holds the vector view's Qdrant folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from cli.project import READY_LINE
from tests.servers import wait_until
from tests.support.cli import as_json, assert_clean_failure, cli, ok
from tests.support.documents import ingest
from tests.support.knowledge import knowledge_janus

CAT = "The cat sits on the mat and purrs.\n\n" * 30
MARKET = "Shares fell sharply when the market opened on Monday.\n\n" * 20
ENV = {
    "JANUS_EMBEDDING_MODEL": "hashing",
    "JANUS_CHUNK_SIZE": "200",
    "JANUS_CHUNK_OVERLAP": "20",
    "JANUS_AGENT_ENABLED": "false",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "janus"
    monkeypatch.setenv("JANUS_HOME", str(home))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "120")
    return home


@pytest.fixture
def documents(home: Path) -> Iterator[dict[str, str]]:
    with knowledge_janus(home) as janus:
        found = {
            "cat": str(ingest(janus, CAT, "file:///notes/cat.txt")[0]),
            "market": str(ingest(janus, MARKET, "file:///notes/market.txt")[0]),
        }
    yield found


def test_search_prints_the_closest_chunks_with_their_citation(documents: dict[str, str]) -> None:
    table = ok("search", "cat on the mat", "--k", "1").stdout
    found = as_json("search", "cat on the mat", "--k", "2")

    assert "cat.txt" in table and "file:///notes/cat.txt" in table and "The cat sits" in table
    best = found["hits"][0]
    assert best["document_id"] == documents["cat"]
    assert best["citation"]["source"] == "file:///notes/cat.txt"
    assert CAT[best["citation"]["char_offset"] :].startswith(best["text"])


def test_search_filters_by_document(documents: dict[str, str]) -> None:
    found = as_json("search", "cat", "--document", documents["market"])

    assert found["hits"] and {h["document_id"] for h in found["hits"]} == {documents["market"]}


def test_bad_input_is_one_line(home: Path) -> None:
    assert_clean_failure(cli("search", " "), "the query is empty")
    assert cli("search", "cat", "--k", "0").exit_code == 2  # Click's own usage error


def test_a_second_process_is_told_who_holds_the_vector_view(
    home: Path, documents: dict[str, str]
) -> None:
    env = dict(os.environ)
    holder = subprocess.Popen(
        [sys.executable, "-m", "cli.project", "vector"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith(READY_LINE)
        janus = Janus.for_cli()
        try:
            vector, head = janus.knowledge_views["vector"], janus.reader.head()
            wait_until(lambda: vector.position == head, timeout=60, message="vector caught up")
        finally:
            janus.close()

        result = cli("search", "cat")

        assert_clean_failure(result, "vector index folder", f"in use by process {holder.pid}")
    finally:
        os.killpg(holder.pid, signal.SIGTERM)
        holder.wait(30)


def test_hybrid_search_shows_how_each_hit_was_found(documents: dict[str, str]) -> None:
    table = ok("search", "cat on the mat", "--mode", "hybrid", "--k", "4").stdout
    found = as_json("search", "cat on the mat", "--mode", "hybrid", "--k", "4")

    assert "via" in table and "vector" in table and "next" in table
    assert found["mode"] == "hybrid"
    best = found["hits"][0]
    assert best["document_id"] == documents["cat"] and best["via"].startswith("vector")
    assert any(len(path) > 1 for hit in found["hits"] for path in hit["paths"])


def test_hybrid_search_without_a_reachable_graph_is_one_line(
    documents: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JANUS_GRAPH_URL", "falkor://127.0.0.1:9")  # nothing listens there

    assert_clean_failure(cli("search", "cat", "--mode", "hybrid"), "graph", "127.0.0.1:9")
    assert ok("search", "cat").stdout  # vector search needs no graph
