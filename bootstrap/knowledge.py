"""The knowledge views' parts, picked from settings: the one place choosing their implementations.

With nothing configured everything is embedded under ``home``: blobs as files, vectors in a Qdrant
local folder (one process may open it at a time), the graph in a ladybug database. A server URL
switches one part to MinIO/S3, a Qdrant server, or Neo4j/FalkorDB; the code above these ports is the
same either way.
"""

from __future__ import annotations

from adapters.chunking import ChunkSpec
from adapters.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from adapters.graph_neo4j import Neo4jGraphStore
from adapters.vectors import QdrantVectorIndex, VectorIndex
from bootstrap.documents import build_blob_store  # lives with the documents' light parts
from bootstrap.settings import Settings

__all__ = [
    "build_blob_store",
    "build_embedder",
    "build_graph_store",
    "build_vector_index",
    "chunk_spec",
]


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
