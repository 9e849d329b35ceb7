"""The documents' parts, picked from settings: blob store, extractor, write path, view statuses.

Apart from `bootstrap.knowledge` (vectors, embeddings, graph), whose imports cost a CLI call about
a second: `janus ingest`, `janus documents` and the API's document routes need none of those.
"""

from __future__ import annotations

from adapters.blobs import BlobStore, FileBlobStore
from adapters.extraction import DocumentExtractor, TextExtractor
from adapters.minio_blobs import MinioBlobStore
from bootstrap.settings import Settings
from commands.ingest import DocumentIngest, IngestLimits
from commands.service import CommandService
from projections.document_views import ViewStatusReader, object_view_reader

__all__ = [
    "build_blob_store",
    "build_document_ingest",
    "build_extractor",
    "document_view_readers",
]


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.s3_url is None:
        return FileBlobStore(settings.home / "blobs")
    return MinioBlobStore(
        settings.s3_url,
        settings.s3_access_key,
        settings.s3_secret_key.get_secret_value(),
        settings.s3_bucket,
    )


def build_extractor() -> TextExtractor:
    """Text, Markdown, HTML and PDF: what ingestion accepts, the views can read."""
    return DocumentExtractor()


def build_document_ingest(settings: Settings, commands: CommandService) -> DocumentIngest:
    """The write path of documents (`janus ingest`, `POST /v1/documents`) on this node's store."""
    limits = IngestLimits(max_bytes=settings.ingest_max_bytes)
    return DocumentIngest(commands, build_blob_store(settings), limits)


def document_view_readers(blobs: BlobStore) -> dict[str, ViewStatusReader]:
    """THE HOOK for each view's status of a document (`GET /v1/documents/{id}`, `janus documents
    show`): the object view's manifest today; the vector and graph views add their readers here."""
    return {"objects": object_view_reader(blobs)}
