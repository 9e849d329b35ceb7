"""Facts about a document moving through ingestion. The pipeline that records them comes later."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import MAX_NAME, JanusAggregate, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_COUNT = 2**63 - 1  # sizes and counts are stored as 64-bit integers


def _count(field: str, value: int) -> int:
    if not 0 <= value <= MAX_COUNT:
        raise InvalidValue(f"{field} must be between 0 and {MAX_COUNT}")
    return value


class DocumentStatus(StrEnum):
    REGISTERED = "registered"
    STORED = "stored"
    EXTRACTED = "extracted"
    INDEXED = "indexed"
    FAILED = "failed"


class Document(JanusAggregate):
    @classmethod
    def register(
        cls,
        document_id: UUID,
        source_uri: str,
        content_type: str,
        sha256: str,
        size_bytes: int,
        ctx: CommandContext,
    ) -> Document:
        require_text("source_uri", source_uri, limit=2_000)
        require_text("content_type", content_type, limit=MAX_NAME)
        if not SHA256.match(sha256):
            raise InvalidValue("sha256 must be 64 lowercase hex characters")
        _count("size_bytes", size_bytes)
        return cls._open(
            cls.Registered,
            ctx,
            id=document_id,
            source_uri=source_uri,
            content_type=content_type,
            sha256=sha256,
            size_bytes=size_bytes,
        )

    class Registered(JanusAggregate.Created):
        source_uri: str
        content_type: str
        sha256: str
        size_bytes: int

    def __init__(self, source_uri: str, content_type: str, sha256: str, size_bytes: int) -> None:
        self.source_uri = source_uri
        self.content_type = content_type
        self.sha256 = sha256
        self.size_bytes = size_bytes
        self.status = DocumentStatus.REGISTERED
        self.blob_key: str | None = None
        self.entities: list[dict[str, Any]] = []
        self.error: str | None = None

    def _require(self, *allowed: DocumentStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"document {self.id} is {self.status.value}")

    def store_content(self, blob_key: str, ctx: CommandContext) -> None:
        self._require(DocumentStatus.REGISTERED)
        self._record(self.ContentStored, ctx, blob_key=require_text("blob_key", blob_key))

    class ContentStored(JanusAggregate.Event):
        blob_key: str

        def apply(self, aggregate: Any) -> None:
            aggregate.blob_key = self.blob_key
            aggregate.status = DocumentStatus.STORED

    def record_extraction(
        self, text_chars: int, entities: list[dict[str, Any]], extractor: str, ctx: CommandContext
    ) -> None:
        """Extracted entities are non-deterministic, so they are recorded, not recomputed."""
        self._require(DocumentStatus.STORED)
        _count("text_chars", text_chars)
        self._record(
            self.Extracted, ctx, text_chars=text_chars, entities=entities, extractor=extractor
        )

    class Extracted(JanusAggregate.Event):
        text_chars: int
        entities: list[dict[str, Any]]
        extractor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.entities = list(self.entities)
            aggregate.status = DocumentStatus.EXTRACTED

    def mark_indexed(self, chunk_count: int, embedding_model: str, ctx: CommandContext) -> None:
        self._require(DocumentStatus.EXTRACTED)
        _count("chunk_count", chunk_count)
        self._record(self.Indexed, ctx, chunk_count=chunk_count, embedding_model=embedding_model)

    class Indexed(JanusAggregate.Event):
        chunk_count: int
        embedding_model: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = DocumentStatus.INDEXED

    def fail(self, stage: str, error: str, ctx: CommandContext) -> None:
        if self.status in (DocumentStatus.INDEXED, DocumentStatus.FAILED):
            raise InvalidTransition(f"document {self.id} is {self.status.value}")
        self._record(self.IngestionFailed, ctx, stage=stage, error=require_text("error", error))

    class IngestionFailed(JanusAggregate.Event):
        stage: str
        error: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = DocumentStatus.FAILED
            aggregate.error = self.error
