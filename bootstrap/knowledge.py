"""The knowledge views' parts, picked from settings: the one place choosing their implementations.

With nothing configured everything is embedded under ``home``: blobs as files, vectors in a Qdrant
local folder (one process may open it at a time), the graph in a ladybug database. A server URL
switches one part to MinIO/S3, a Qdrant server, or Neo4j/FalkorDB; the code above these ports is the
same either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

from sqlalchemy.engine import Engine

from adapters.blobs import BlobStore
from adapters.chunking import ChunkSpec
from adapters.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from adapters.extraction import TextExtractor
from adapters.graph import GraphStore
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from adapters.graph_neo4j import Neo4jGraphStore
from adapters.vectors import QdrantVectorIndex, VectorIndex, VectorIndexError
from bootstrap.documents import build_blob_store, build_extractor
from bootstrap.settings import Settings
from event_store.reader import NotificationReader
from projections.generations import (
    Generations,
    GraphGenerations,
    ObjectGenerations,
    VectorGenerations,
    graph_view,
)
from projections.hybrid import HybridSearch
from projections.knowledge import KnowledgeRunner
from projections.objects import ObjectProjection
from projections.registry import TargetUnavailable
from projections.search import VectorSearch
from projections.vector import DEFAULT_PREFIX, VectorProjection

__all__ = [
    "KNOWLEDGE_VIEWS",
    "KnowledgeParts",
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


KNOWLEDGE_VIEWS = ("objects", "vector", "graph")


class KnowledgeParts:
    """The knowledge views' stores, each opened on first use and shared by everything in this
    process that needs it (the vector projection and search must share one embedded index)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._opening = threading.Lock()

    @cached_property
    def blobs(self) -> BlobStore:
        return build_blob_store(self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        return build_embedder(self.settings)

    @cached_property
    def extractor(self) -> TextExtractor:
        return build_extractor()

    @cached_property
    def chunking(self) -> ChunkSpec:
        return chunk_spec(self.settings)

    @cached_property
    def index(self) -> VectorIndex:
        return build_vector_index(self.settings)

    @cached_property
    def graph(self) -> GraphStore:
        return build_graph_store(self.settings)

    def vector_projection(self, collection: str | None = None) -> VectorProjection:
        return VectorProjection(
            self.index,
            self.embedder,
            self.blobs,
            self.extractor,
            self.chunking,
            collection=collection,
        )

    def generations(self, name: str) -> Callable[[], Generations]:
        def open_generations() -> Generations:
            with self._opening:  # cached_property is not thread-safe: open each store once
                return self._generations(name)

        return open_generations

    def _generations(self, name: str) -> Generations:
        if name == "vector":
            return VectorGenerations(self.index, self.vector_projection)
        if name == "objects":
            return ObjectGenerations(
                self.blobs,
                lambda prefix: ObjectProjection(
                    self.blobs, self.extractor, self.chunking, prefix=prefix
                ),
            )

        def graph(**kwargs: Any) -> Any:
            return graph_view(
                self.graph,
                self.blobs,
                self.extractor,
                self.embedder.digest,
                self.chunking,
                **kwargs,
            )

        return GraphGenerations(self.graph, graph)

    def search(self) -> VectorSearch:
        """Search over the vector view; TargetUnavailable when its index cannot be opened here
        (the embedded folder held by another process: the message names it)."""
        with self._opening:
            try:
                index = self.index
            except VectorIndexError as error:
                raise TargetUnavailable(str(error)) from error
            return VectorSearch(index, self.embedder, DEFAULT_PREFIX)

    def hybrid(self) -> HybridSearch:
        """Hybrid search over the vector and graph views (projections/hybrid.py); opening fails
        as ``search()`` does, and a graph that cannot be opened or read raises GraphStoreError
        (the agent then falls back to vector search)."""
        vectors = self.search()
        with self._opening:
            return HybridSearch(vectors, self.graph)

    def close(self) -> None:
        for name in ("index", "graph"):
            part = self.__dict__.pop(name, None)
            if part is not None:
                part.close()


def knowledge_runners(
    parts: KnowledgeParts, reader: NotificationReader, engine: Engine
) -> dict[str, KnowledgeRunner]:
    return {
        name: KnowledgeRunner(name, parts.generations(name), reader, engine)
        for name in KNOWLEDGE_VIEWS
    }
