"""The object and vector projections on real stores: embedded Qdrant and the filesystem blob twin.

The Document aggregate records real events; a list stands in for the notification log (the
ingestion commands that will append them do not exist yet). The hashing embedder keeps it fast;
the embedder contract suite covers the real model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.blobs import BlobNotFound, FileBlobStore, blob_key_for
from adapters.chunking import ChunkSpec, chunk_id
from adapters.embeddings import HashingEmbedder
from adapters.extraction import PlainTextExtractor
from adapters.vectors import QdrantVectorIndex, VectorPoint
from domain.actions import HazardClass
from domain.confirmation import Confirmation
from domain.document import Document
from domain.goal import Goal
from domain.meta import Actor, ActorKind, CommandContext
from event_store.reader import LoggedEvent
from projections.objects import EXTRACTED, FAILED, RETRACTED, ObjectProjection
from projections.vector import VectorProjection

CHUNKING = ChunkSpec(size=120, overlap=20)
CAT_TEXT = "The cat sits on the mat and purrs.\n\n" * 12
MARKET_TEXT = "Shares fell sharply when the market opened on Monday.\n\n" * 6


class Log:
    """The notification log, as far as a projection sees it: events with positions, in order."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.ctx = CommandContext("cmd", "corr", "cmd", Actor(ActorKind.USER, "alice"), "test")

    def record(self, document: Any) -> list[LoggedEvent]:
        new = [
            LoggedEvent(len(self.events) + i + 1, "", e.originator_id, e.originator_version, e)
            for i, e in enumerate(document.collect_events())
        ]
        self.events += new
        return new


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[QdrantVectorIndex]:
    index = QdrantVectorIndex(path=tmp_path / "qdrant")
    yield index
    index.close()


def vector_view(index: QdrantVectorIndex, blobs: FileBlobStore, dim: int = 64) -> VectorProjection:
    return VectorProjection(index, HashingEmbedder(dim=dim), blobs, PlainTextExtractor(), CHUNKING)


def object_view(blobs: FileBlobStore) -> ObjectProjection:
    return ObjectProjection(blobs, PlainTextExtractor(), CHUNKING)


def ingest(log: Log, blobs: FileBlobStore, data: bytes, media_type: str = "text/plain") -> Document:
    """What the pipeline will do: the blob first, then the document's first event."""
    stored = blobs.put(data, media_type)
    document = Document.register(
        uuid.uuid4(),
        f"file:///{stored.sha256[:8]}",
        stored.sha256[:8],
        media_type,
        stored.sha256,
        stored.size,
        stored.key,
        log.ctx,
    )
    log.record(document)
    return document


def test_registered_documents_become_searchable_chunks_with_provenance(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    cat = ingest(log, blobs, CAT_TEXT.encode())
    ingest(log, blobs, MARKET_TEXT.encode())
    view = vector_view(index, blobs)
    view.start()

    assert view.apply(log.events) == 2

    query = view.embedder.embed_query("cat on the mat")
    [hit] = index.search(view.collection, query, k=1)
    assert hit.payload["document_id"] == str(cat.id)
    assert hit.id == chunk_id(cat.id, hit.payload["chunk_index"], view.embedder.digest)
    assert hit.payload["event_id"] == str(log.events[0].event.meta.event_id)
    assert hit.payload["position"] == 1
    assert hit.payload["sha256"] == cat.sha256
    assert CAT_TEXT[hit.payload["start"] :].startswith(hit.payload["text"])
    assert index.get_position(view.collection) == 2


def test_a_crash_before_the_position_replays_into_the_same_points(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    ingest(log, blobs, CAT_TEXT.encode())
    ingest(log, blobs, MARKET_TEXT.encode())
    crashed = vector_view(index, blobs)
    crashed.start()
    # The crash: every upsert done, the position never stored.
    for logged in log.events:
        crashed.process_event(logged)
    crashed.flush()
    written = {p.id for p in index.points(crashed.collection)}

    restarted = vector_view(index, blobs)
    assert restarted.start() == 0
    restarted.apply(log.events)

    assert {p.id for p in index.points(restarted.collection)} == written
    assert index.count(restarted.collection) == len(written)


def test_events_at_or_below_the_position_are_skipped(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    ingest(log, blobs, CAT_TEXT.encode())
    view = vector_view(index, blobs)
    view.start()
    view.apply(log.events)
    ingest(log, blobs, MARKET_TEXT.encode())

    resumed = vector_view(index, blobs)

    assert resumed.start() == 1
    assert resumed.apply(log.events) == 1
    assert resumed.apply(log.events) == 0
    assert index.get_position(resumed.collection) == 2


def test_a_document_without_text_fails_alone(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    broken = ingest(log, blobs, b"\xff\xfe not utf-8")
    good = ingest(log, blobs, CAT_TEXT.encode())
    vectors, objects = vector_view(index, blobs), object_view(blobs)
    vectors.start()
    objects.start()

    vectors.apply(log.events)
    objects.apply(log.events)

    documents = {p.payload["document_id"] for p in index.points(vectors.collection)}
    assert documents == {str(good.id)}
    manifest = blobs.get_json(objects.manifest_key(broken.id))
    assert (manifest["status"], manifest["chunks"]) == (FAILED, [])
    assert "UTF-8" in manifest["reason"]
    assert blobs.get_json(objects.manifest_key(good.id))["status"] == EXTRACTED
    assert (vectors.position, objects.position) == (2, 2)


def test_a_failed_ingestion_leaves_every_view(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    document = ingest(log, blobs, CAT_TEXT.encode())
    vectors, objects = vector_view(index, blobs), object_view(blobs)
    vectors.start()
    objects.start()
    vectors.apply(log.events)
    objects.apply(log.events)
    assert index.count(vectors.collection) > 0

    document.retract("operator withdrew it", log.ctx)
    log.record(document)
    vectors.apply(log.events)
    objects.apply(log.events)

    assert index.count(vectors.collection) == 0
    manifest = blobs.get_json(objects.manifest_key(document.id))
    assert (manifest["status"], manifest["reason"]) == (RETRACTED, "operator withdrew it")
    assert not blobs.exists(objects.text_key(document.id))


def test_an_event_pointing_at_no_blob_stalls_the_projection(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    sha = "0" * 64
    gone = Document.register(
        uuid.uuid4(), "file:///gone", "gone", "text/plain", sha, 3, blob_key_for(sha), log.ctx
    )
    log.record(gone)
    view = vector_view(index, blobs)
    view.start()

    with pytest.raises(BlobNotFound):
        view.apply(log.events)

    assert index.get_position(view.collection) is None


def test_a_model_change_builds_a_new_collection_beside_the_live_one(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    ingest(log, blobs, CAT_TEXT.encode())
    live, rebuilt = vector_view(index, blobs, dim=64), vector_view(index, blobs, dim=32)
    live.start()
    live.apply(log.events)
    index.set_alias("chunks", live.collection)

    rebuilt.start()
    rebuilt.apply(log.events)
    index.set_alias("chunks", rebuilt.collection)
    index.drop(live.collection)

    assert rebuilt.collection != live.collection
    assert index.collections() == [rebuilt.collection]
    assert index.search("chunks", rebuilt.embedder.embed_query("cat"), k=1)


def test_the_object_view_keeps_text_manifest_and_position_with_provenance(
    log: Log, blobs: FileBlobStore
) -> None:
    document = ingest(log, blobs, CAT_TEXT.encode(), "text/markdown")
    view = object_view(blobs)
    view.start()

    view.apply(log.events)

    text = blobs.stat(view.text_key(document.id))
    assert blobs.get(view.text_key(document.id)).decode() == CAT_TEXT
    assert (text.event_id, text.position) == (log.events[0].event.meta.event_id, 1)
    manifest = blobs.get_json(view.manifest_key(document.id))
    assert manifest["status"] == EXTRACTED
    assert manifest["chunking"] == CHUNKING.as_dict()
    assert [c["index"] for c in manifest["chunks"]] == list(range(len(manifest["chunks"])))
    assert object_view(blobs).start() == 1


def test_verify_compares_point_ids_and_payloads_with_the_log(
    log: Log, blobs: FileBlobStore, index: QdrantVectorIndex
) -> None:
    ingest(log, blobs, CAT_TEXT.encode())
    failed = ingest(log, blobs, MARKET_TEXT.encode())
    failed.retract("withdrawn", log.ctx)
    log.record(failed)
    view = vector_view(index, blobs)
    view.start()
    view.apply(log.events)
    assert view.verify(log.events).clean

    [first, second, *_] = list(index.points(view.collection, with_vectors=True))
    index.delete(view.collection, [first.id])
    index.upsert(view.collection, [VectorPoint(second.id, second.vector, {"text": "tampered"})])
    stray = VectorPoint(uuid.uuid4(), second.vector, {"document_id": "stray"})
    index.upsert(view.collection, [stray])

    drift = view.verify(log.events)
    assert (drift.missing, drift.unexpected, drift.changed) == ([first.id], [stray.id], [second.id])


def goal_story(log: Log) -> tuple[Goal, Goal, list[int]]:
    """A goal planned, confirmed and completed (its confirmation a second aggregate, with a
    document and an open goal interleaved), then an event of its story after the finish."""
    alice = Actor(ActorKind.USER, "alice")
    done_id = uuid.uuid4()
    ctx = CommandContext("cmd", str(done_id), "cmd", alice, "test")
    done = Goal.submit(done_id, "water the plants", "alice", 5, ctx)
    log.record(done)
    other_id = uuid.uuid4()
    other_ctx = CommandContext("cmd2", str(other_id), "cmd2", alice, "test")
    other = Goal.submit(other_id, "feed the cat", "alice", 5, other_ctx)
    done.record_plan(["open the tap"], ctx)
    log.record(done)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    confirmation = Confirmation.request(
        uuid.uuid4(), done.id, None, "open_tap", {}, HazardClass.LOW, now, now + timedelta(1), ctx
    )
    log.record(confirmation)
    log.record(other)
    confirmation.grant("alice", now, ctx)
    log.record(confirmation)
    done.complete("watered", ctx)
    log.record(done)
    story = [e.position for e in log.events if e.event.meta.correlation_id == str(done.id)]
    late = Confirmation.request(
        uuid.uuid4(), done.id, None, "close_tap", {}, HazardClass.LOW, now, now + timedelta(1), ctx
    )
    log.record(late)
    return done, other, story


def test_a_finished_goal_gets_its_whole_story_as_a_bundle_across_batches_and_restarts(
    log: Log, blobs: FileBlobStore
) -> None:
    ingest(log, blobs, CAT_TEXT.encode())
    done, other, story = goal_story(log)
    finish = log.events[-2]
    halves = (log.events[:3], log.events[3:])

    first = object_view(blobs)
    first.start()
    first.apply(halves[0])
    crashed = object_view(blobs)  # a restart, then a crash before the batch's position
    crashed.start()
    for logged in halves[1]:
        crashed.process_event(logged)
    resumed = object_view(blobs)
    resumed.start()
    resumed.apply(log.events)

    bundle = blobs.get_json(resumed.bundle_key(done.id))
    assert [e["position"] for e in bundle["events"]] == story
    assert [e["type"] for e in bundle["events"]] == [
        "Goal.Submitted",
        "Goal.Planned",
        "Confirmation.Requested",
        "Confirmation.Granted",
        "Goal.Completed",
    ]
    assert bundle["events"][2]["data"]["action"] == "open_tap"
    assert (bundle["goal_id"], bundle["status"], bundle["outcome"]) == (
        str(done.id),
        "completed",
        "watered",
    )
    stat = blobs.stat(resumed.bundle_key(done.id))
    assert (stat.event_id, stat.position) == (finish.event.meta.event_id, finish.position)
    assert not blobs.exists(resumed.bundle_key(other.id))
    assert resumed.verify(log.events).clean

    whole = ObjectProjection(blobs, PlainTextExtractor(), CHUNKING, prefix="views/objects/g2")
    whole.start()
    whole.apply(log.events)
    assert blobs.get(whole.bundle_key(done.id)) == blobs.get(resumed.bundle_key(done.id))


def test_verify_catches_a_tampered_or_missing_bundle(log: Log, blobs: FileBlobStore) -> None:
    done, _, _ = goal_story(log)
    view = object_view(blobs)
    view.start()
    view.apply(log.events)
    key = view.bundle_key(done.id)
    bundle = blobs.get_json(key)
    finish = log.events[-2]

    blobs.put_json(
        key, bundle | {"outcome": "flooded"}, event_id=uuid.uuid4(), position=finish.position
    )
    assert view.verify(log.events).changed == [done.id]
    blobs.delete(key)
    assert view.verify(log.events).missing == [done.id]
