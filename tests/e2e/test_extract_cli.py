"""`janus extract`: one pass of entity extraction on the embedded store, its status, and one line
when another process holds the extraction lock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.knowledge import build_blob_store
from bootstrap.settings import Settings
from tests.support.cli import assert_clean_failure, cli, ok
from tests.support.extraction import extractions, ingest_text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    monkeypatch.setenv("JANUS_EXTRACTION_MODEL", "rules")
    return tmp_path / "janus"


@pytest.fixture
def janus(home: Path) -> Iterator[Janus]:
    built = Janus.build(Settings(home=home))
    try:
        yield built
    finally:
        built.close()


def test_extract_records_each_document_once_and_reports_its_position(janus: Janus) -> None:
    doc = ingest_text(
        janus, build_blob_store(janus.settings), "Acme Ltd fitted it.", "file:///a.txt"
    )

    first = json.loads(ok("extract", "--json").stdout)
    again = json.loads(ok("extract", "--json").stdout)
    status = json.loads(ok("extract", "status", "--json").stdout)

    assert first["documents"] == {"recorded": 1}
    assert again["documents"] == {}
    assert [e.entities for e in extractions(janus, doc)] == [
        [{"name": "Acme Ltd", "type": "ORG", "chunks": [0]}]
    ]
    assert status["model"] == "entities:rules" and status["lag"] == 0
    ingest_text(janus, build_blob_store(janus.settings), "Globex too.", "file:///b.txt")
    assert "documents 1 recorded" in ok("extract").stdout


def test_extract_refuses_in_one_line_while_another_process_extracts(janus: Janus) -> None:
    lock = janus.leader_lock("extraction")
    assert lock.acquire(timeout=5)
    try:
        assert_clean_failure(cli("extract"), "another process is extracting")
    finally:
        lock.release()
