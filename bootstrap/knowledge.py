"""The knowledge views' parts, picked from settings: the one place choosing their implementations.

With nothing configured everything is embedded under ``home``: blobs as files, vectors in a Qdrant
local folder (one process may open it at a time), the graph in a ladybug database. A server URL
switches one part to MinIO/S3, a Qdrant server, or Neo4j/FalkorDB; the code above these ports is the
same either way.
"""

from __future__ import annotations

from adapters.blobs import BlobStore, FileBlobStore
from adapters.chunking import ChunkSpec
from adapters.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from adapters.extraction import DocumentExtractor, TextExtractor
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from adapters.graph_neo4j import Neo4jGraphStore
from adapters.minio_blobs import MinioBlobStore
from adapters.vectors import QdrantVectorIndex, VectorIndex
from bootstrap.settings import Settings
from commands.ingest import DocumentIngest, IngestLimits
from commands.service import CommandService
from projections.document_views import ViewStatusReader, object_view_reader

__all__ = [
    "build_blob_store",
    "build_document_ingest",
    "build_embedder",
    "build_extractor",
    "build_graph_store",
    "build_vector_index",
    "chunk_spec",
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


def build_vector_index(settings: Settings) -> VectorIndex:
    if settings.qdrant_url is None:
        return QdrantVectorIndex(path=settings.home / "qdrant")
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return QdrantVectorIndex(url=settings.qdrant_url, api_key=key)


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_model == "hashing":
        return HashingEmbedder()
    return SentenceTransformerEmbedder(model_name=settings.embedding_model)


def build_graph_store(settings: Settings) -> GraphStore:
    url = settings.graph_url
    if url is None:
        return LadybugGraphStore(settings.home / "graph")
    if url.startswith("falkor"):
        return FalkorDBGraphStore(url)
    password = settings.graph_password.get_secret_value() if settings.graph_password else None
    auth = (settings.graph_user, password) if password is not None else None
    return Neo4jGraphStore(url, auth=auth)


def chunk_spec(settings: Settings) -> ChunkSpec:
    return ChunkSpec(size=settings.chunk_size, overlap=settings.chunk_overlap)


def build_extractor() -> TextExtractor:
    """Text, Markdown, HTML and PDF: what ingestion accepts, the views can read."""
    return DocumentExtractor()


def build_document_ingest(settings: Settings, commands: CommandService) -> DocumentIngest:
    """The write path of documents (`janus ingest`, `POST /v1/documents`) on this node's store."""
    limits = IngestLimits(max_bytes=settings.ingest_max_bytes)
    return DocumentIngest(commands, build_blob_store(settings), limits)


def document_view_readers(blobs: BlobStore) -> dict[str, ViewStatusReader]:
    """The hook for each view's status of a document (`GET /v1/documents/{id}`, `janus documents
    show`): the object view's manifest today; the vector and graph views add their readers here."""
    return {"objects": object_view_reader(blobs)}
