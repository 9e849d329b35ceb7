"""The write path of documents on both stores: bytes stored before the event, once per source.

Each test runs on SQLite and on real Postgres (the `janus` fixture); the blob store is the
filesystem twin (the S3 one passes the same contract suite).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore
from bootstrap.container import Janus
from commands.ingest import (
    DocumentIngest,
    DocumentTooLarge,
    EmptyDocument,
    IngestLimits,
    UnsupportedMediaType,
)
from domain.document import Document, document_id_for
from tests.support.commands import as_alice
from tests.support.documents import pdf_bytes

LIMIT = 64 * 1024


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


@pytest.fixture
def ingest(janus: Janus, blobs: FileBlobStore) -> DocumentIngest:
    return DocumentIngest(janus.commands, blobs, IngestLimits(max_bytes=LIMIT))


def registered_events(janus: Janus) -> list[Document.Registered]:
    events = (janus.reader.decode(n).event for n in janus.reader.read_after(0, 10_000))
    return [e for e in events if isinstance(e, Document.Registered)]


def test_a_file_is_stored_then_recorded_and_shows_in_the_view(
    janus: Janus, ingest: DocumentIngest, blobs: FileBlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(pdf_bytes("The boiler manual."))

    done = ingest.ingest_file(path, as_alice())

    assert done.new and done.outcome == "registered"
    assert (done.source_uri, done.title, done.content_type) == (
        path.resolve().as_uri(),
        "manual.pdf",
        "application/pdf",
    )
    assert done.document_id == document_id_for(done.source_uri, done.sha256)
    assert blobs.get(done.blob_key) == path.read_bytes()
    [event] = registered_events(janus)
    assert (event.blob_key, event.sha256, event.size_bytes) == (
        done.blob_key,
        done.sha256,
        path.stat().st_size,
    )
    janus.relational.catch_up()
    [row] = janus.views.documents()
    assert (row["id"], row["title"], row["status"]) == (
        str(done.document_id),
        "manual.pdf",
        "registered",
    )


def test_the_same_bytes_from_the_same_source_record_nothing_new(
    janus: Janus, ingest: DocumentIngest, tmp_path: Path
) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n")
    first = ingest.ingest_file(path, as_alice())

    again = ingest.ingest_file(path, as_alice())
    elsewhere = ingest.ingest_file(path, as_alice(), source_uri="https://example.com/notes.md")

    assert (again.document_id, again.outcome, again.new) == (
        first.document_id,
        "already_registered",
        False,
    )
    assert elsewhere.new and elsewhere.document_id != first.document_id
    assert elsewhere.blob_key == first.blob_key  # one copy of the bytes
    assert len(registered_events(janus)) == 2


def test_a_crash_between_the_put_and_the_event_leaves_only_a_blob_and_a_retry_records_once(
    janus: Janus, ingest: DocumentIngest, blobs: FileBlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "todo.txt"
    path.write_text("Buy light bulbs.\n")
    # What the crash left: the bytes stored, no event recorded.
    orphan = blobs.put_file(path, "text/plain")
    assert registered_events(janus) == []

    done = ingest.ingest_file(path, as_alice())
    again = ingest.ingest_file(path, as_alice())

    assert done.new and done.blob_key == orphan.key
    assert not again.new
    assert len(registered_events(janus)) == 1
    assert list(blobs.list_keys()) == [orphan.key]


def test_an_upload_stream_is_spooled_with_its_declared_type_and_filename(
    janus: Janus, ingest: DocumentIngest, blobs: FileBlobStore
) -> None:
    body = io.BytesIO(b"<p>Lock the door.</p>")

    done = ingest.ingest_stream(
        body,
        as_alice(),
        filename="policy.html",
        source_uri="upload:policy.html",
        media_type="application/octet-stream",
    )

    assert (done.content_type, done.title, done.size_bytes) == ("text/html", "policy.html", 21)
    assert blobs.get(done.blob_key) == b"<p>Lock the door.</p>"


@pytest.mark.parametrize(
    ("name", "data", "kwargs", "refusal"),
    [
        ("big.txt", b"x" * (LIMIT + 1), {}, DocumentTooLarge),
        ("empty.txt", b"", {}, EmptyDocument),
        ("photo.jpg", b"\xff\xd8\xff", {}, UnsupportedMediaType),
        ("notes.txt", b"hi", {"media_type": "image/png"}, UnsupportedMediaType),
        ("notes.txt", b"hi", {"title": "  "}, ValueError),
        ("notes.txt", b"hi", {"source_uri": "bad\x00source"}, ValueError),
    ],
)
def test_bad_input_stores_nothing_and_records_nothing(
    janus: Janus,
    ingest: DocumentIngest,
    blobs: FileBlobStore,
    tmp_path: Path,
    name: str,
    data: bytes,
    kwargs: dict[str, str],
    refusal: type[Exception],
) -> None:
    path = tmp_path / name
    path.write_bytes(data)

    with pytest.raises(refusal):
        ingest.ingest_file(path, as_alice(), **kwargs)
    with pytest.raises(refusal):
        ingest.ingest_stream(
            io.BytesIO(data),
            as_alice(),
            filename=name,
            source_uri=kwargs.get("source_uri", "s"),
            **{k: v for k, v in kwargs.items() if k != "source_uri"},
        )

    assert list(blobs.list_keys()) == []
    assert registered_events(janus) == []
