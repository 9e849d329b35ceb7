"""Entity extraction recorded once per document, on both event stores, with the rules twin
counting its calls; the graph view built from the record alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore
from adapters.chunking import ChunkSpec, chunk_id
from adapters.entities import ModelUnavailable
from adapters.extraction import PlainTextExtractor
from adapters.graph_ladybug import LadybugGraphStore
from bootstrap.container import Janus
from bootstrap.extraction import build_extraction
from commands import models as m
from commands.extraction import EntityExtraction
from projections.graph import GraphProjection, entity_id
from tests.support.commands import as_alice
from tests.support.extraction import CountingEntityModel, extractions, ingest_text, logged

CHUNKING = ChunkSpec(size=80, overlap=0)
DIGEST = "embedder-1"
DOOR = (
    "The front door has a smart lock made by Acme Ltd.\n\n"
    "Alice Smith fitted it for Globex in March.\n\n"
    "The back door is always locked at night."
)
SHED = "Bob Jones keeps the key to the shed. Acme Ltd made that lock too."


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[LadybugGraphStore]:
    store = LadybugGraphStore(tmp_path / "graph")
    yield store
    store.close()


def extractor(janus: Janus, blobs: FileBlobStore, model: CountingEntityModel) -> EntityExtraction:
    return EntityExtraction(
        janus.app, janus.commands.runner, model, blobs, PlainTextExtractor(), CHUNKING
    )


def drain(extraction: EntityExtraction) -> None:
    while extraction.run_once():
        pass


def test_each_document_is_extracted_once_per_chunk_and_recorded_with_its_calls(
    janus: Janus, blobs: FileBlobStore
) -> None:
    door = ingest_text(janus, blobs, DOOR, "file:///door.txt")
    shed = ingest_text(janus, blobs, SHED, "file:///shed.txt")
    model = CountingEntityModel()

    drain(extractor(janus, blobs, model))

    [recorded] = extractions(janus, door)
    assert model.calls == 3 + 1  # one call per chunk of each document
    assert recorded.extractor == "entities:rules"
    assert recorded.model_digest == model.digest
    assert recorded.parameters["chunking"] == CHUNKING.as_dict()
    assert [c["chunk_index"] for c in recorded.calls] == [0, 1, 2]
    assert all("Text: " in c["prompt"] and c["raw_output"] for c in recorded.calls)
    by_name = {e["name"]: e for e in recorded.entities}
    assert by_name["Acme Ltd"] == {"name": "Acme Ltd", "type": "ORG", "chunks": [0]}
    assert by_name["Alice Smith"]["chunks"] == [1]
    assert {"source": "Alice Smith", "target": "Globex", "type": "MENTIONED_WITH", "chunk": 1} in (
        recorded.relations
    )
    assert len(extractions(janus, shed)) == 1


def test_a_rebuild_or_a_second_pass_over_the_log_makes_no_model_call(
    janus: Janus, blobs: FileBlobStore, graph: LadybugGraphStore
) -> None:
    door = ingest_text(janus, blobs, DOOR, "file:///door.txt")
    ingest_text(janus, blobs, SHED, "file:///shed.txt")
    model = CountingEntityModel()
    drain(extractor(janus, blobs, model))
    calls = model.calls

    for namespace in ("graph", "rebuilt"):
        view = GraphProjection(
            graph, blobs, PlainTextExtractor(), DIGEST, CHUNKING, namespace=namespace
        )
        view.start()
        view.apply(logged(janus))
    # The extractor's position lost (a new tracking name): it reads the log from the start.
    again = extractor(janus, blobs, model)
    again.name = "extraction_again"
    drain(again)

    assert model.calls == calls
    assert len(extractions(janus, door)) == 1
    assert graph.export("rebuilt") == graph.export("graph")
    acme = entity_id("ORG", "Acme Ltd")
    mentions = {e.source for e in graph.export("graph").edges if e.target == acme}
    assert str(chunk_id(door, 0, DIGEST)) in mentions and len(mentions) == 2


def test_two_extractors_racing_on_one_document_record_one_extraction(
    janus: Janus, blobs: FileBlobStore
) -> None:
    door = ingest_text(janus, blobs, DOOR, "file:///door.txt")
    rival = extractor(janus, blobs, CountingEntityModel())
    # The rival records while the first is still asking its model.
    model = CountingEntityModel(before_call=lambda: rival.extract(door))

    outcome = extractor(janus, blobs, model).extract(door)

    assert outcome == "already_extracted"
    assert len(extractions(janus, door)) == 1


def test_a_retracted_document_is_not_extracted(janus: Janus, blobs: FileBlobStore) -> None:
    door = ingest_text(janus, blobs, DOOR, "file:///door.txt")
    janus.commands.retract_document(
        m.RetractDocument(document_id=door, reason="wrong file"), as_alice()
    )
    model = CountingEntityModel()

    drain(extractor(janus, blobs, model))

    assert model.calls == 0
    assert extractions(janus, door) == []


class Unavailable(CountingEntityModel):
    def check(self) -> None:
        raise ModelUnavailable("no model here")


def test_without_a_model_the_extractor_waits_and_keeps_its_position(
    janus: Janus, blobs: FileBlobStore
) -> None:
    ingest_text(janus, blobs, DOOR, "file:///door.txt")
    waiting = extractor(janus, blobs, Unavailable())

    with pytest.raises(ModelUnavailable):
        waiting.run_once()

    assert waiting.position == 0
    assert waiting.status()["state"] == "waiting: no model here"


def test_the_wired_extractor_uses_the_rules_twin_when_the_agent_does(janus: Janus) -> None:
    settings = janus.settings.model_copy(update={"agent_model": "rules"})
    built = Janus.build(settings)
    try:
        wired = build_extraction(built)
        assert wired.model.name == "entities:rules"
        assert wired.chunking == ChunkSpec(settings.chunk_size, settings.chunk_overlap)
    finally:
        built.close()


def test_with_no_document_to_extract_the_model_is_never_needed(janus: Janus) -> None:
    janus.commands.submit_goal(m.SubmitGoal(text="lock up"), as_alice())
    quiet = extractor(janus, FileBlobStore(janus.settings.home / "blobs"), Unavailable())

    assert quiet.run_once() > 0

    assert quiet.position == janus.app.head()
    assert quiet.status()["state"] == "running"
