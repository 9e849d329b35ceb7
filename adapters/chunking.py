"""Deterministic chunking and the ids that make re-ingestion and replay idempotent.

The same text with the same `ChunkSpec` always yields the same chunks, and a chunk's point id is
uuid5(document id, "<chunk index>:<embedding model digest>"): re-ingesting or replaying a document
upserts the very same points, and a model change gives new ids in a new collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from langchain_text_splitters import RecursiveCharacterTextSplitter

from adapters.embeddings import Embedder

__all__ = ["Chunk", "ChunkSpec", "chunk_id", "chunk_text", "collection_name"]

SPLITTER = "langchain-recursive-character"
MAX_CHUNK_SIZE = 100_000


@dataclass(frozen=True)
class ChunkSpec:
    """Chunk size and overlap in characters; recorded in the vector view's spec."""

    size: int = 1000
    overlap: int = 150

    def __post_init__(self) -> None:
        if not 0 < self.size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1-{MAX_CHUNK_SIZE} characters, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"chunk overlap must be 0 to size-1, got {self.overlap}")

    def as_dict(self) -> dict[str, Any]:
        return {"splitter": SPLITTER, "size": self.size, "overlap": self.overlap}


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int  # character offset of the chunk in the source text, for citations


def chunk_text(text: str, spec: ChunkSpec) -> list[Chunk]:
    """Split `text` into chunks of at most `spec.size` characters, in order."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=spec.size,
        chunk_overlap=spec.overlap,
        add_start_index=True,
        strip_whitespace=True,
    )
    documents = splitter.create_documents([text])
    return [
        Chunk(index, doc.page_content, int(doc.metadata["start_index"]))
        for index, doc in enumerate(documents)
    ]


def chunk_id(document_id: UUID, index: int, model_digest: str) -> UUID:
    """The point id of chunk `index` of a document embedded by the model with `model_digest`."""
    if index < 0:
        raise ValueError("chunk index must not be negative")
    if not model_digest:
        raise ValueError("model digest must not be empty")
    return uuid5(document_id, f"{index}:{model_digest}")


def collection_name(prefix: str, embedder: Embedder) -> str:
    """`<prefix>__<model>-<digest12>`: the model is part of the name, so a change is a rebuild."""
    return f"{prefix}__{embedder.slug}"
