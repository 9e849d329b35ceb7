"""A document ingested into Janus: registered once its bytes are stored, retracted to withdraw it.

The raw bytes are written to the blob store (content-addressed by sha256) *before* ``Registered``
is recorded, so an event never points at nothing; a crash in between leaves at most an unreferenced
blob. Whether a view has chunked, embedded or graphed a document is view state (each view's status
shows it), not a domain fact: those are deterministic derivations the projections recompute.
Entity extraction is a model output, so it is recorded here (``EntitiesExtracted``), once.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import MAX_NAME, JanusAggregate, derived_id, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_COUNT = 2**63 - 1  # sizes and counts are stored as 64-bit integers
MAX_SOURCE = 2_000
MAX_TITLE = 500


def _count(field: str, value: int) -> int:
    if not 0 <= value <= MAX_COUNT:
        raise InvalidValue(f"{field} must be between 0 and {MAX_COUNT}")
    return value


def document_id_for(source_uri: str, sha256: str) -> UUID:
    """The same bytes from the same source are the same document: a repeat ingest finds it."""
    return derived_id("document", source_uri, sha256)


def content_key(sha256: str) -> str:
    """Where raw bytes live in the blob store: content-addressed, fanned out like git's objects."""
    return f"sha256/{sha256[:2]}/{sha256}"


def title_from(source_uri: str) -> str:
    """A document's default title: the last segment of its source."""
    tail = source_uri.rstrip("/").rsplit("/", maxsplit=1)[-1]
    return (tail or source_uri)[:MAX_TITLE]


class DocumentStatus(StrEnum):
    REGISTERED = "registered"
    RETRACTED = "retracted"


class Document(JanusAggregate):
    @classmethod
    def register(
        cls,
        document_id: UUID,
        source_uri: str,
        title: str,
        content_type: str,
        sha256: str,
        size_bytes: int,
        blob_key: str,
        ctx: CommandContext,
    ) -> Document:
        require_text("source_uri", source_uri, limit=MAX_SOURCE)
        require_text("title", title, limit=MAX_TITLE)
        require_text("content_type", content_type, limit=MAX_NAME)
        require_text("blob_key", blob_key, limit=MAX_SOURCE)
        if not SHA256.match(sha256):
            raise InvalidValue("sha256 must be 64 lowercase hex characters")
        _count("size_bytes", size_bytes)
        return cls._open(
            cls.Registered,
            ctx,
            id=document_id,
            source_uri=source_uri,
            title=title,
            content_type=content_type,
            sha256=sha256,
            size_bytes=size_bytes,
            blob_key=blob_key,
        )

    class Registered(JanusAggregate.Created):
        """Version 2 added ``title`` and ``blob_key``: version 1 documents were stored at their
        content address and titled by their source."""

        class_version = 2
        source_uri: str
        title: str
        content_type: str
        sha256: str
        size_bytes: int
        blob_key: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["title"] = title_from(state["source_uri"])
            state["blob_key"] = content_key(state["sha256"])

    def __init__(
        self,
        source_uri: str,
        title: str,
        content_type: str,
        sha256: str,
        size_bytes: int,
        blob_key: str,
    ) -> None:
        self.source_uri = source_uri
        self.title = title
        self.content_type = content_type
        self.sha256 = sha256
        self.size_bytes = size_bytes
        self.blob_key = blob_key
        self.status = DocumentStatus.REGISTERED
        self.retraction_reason: str | None = None

    def retract(self, reason: str, ctx: CommandContext) -> bool:
        """Withdraw the document from every view. Retracting it again changes nothing."""
        require_text("reason", reason, limit=MAX_NAME * 10)
        if self.status is DocumentStatus.RETRACTED:
            return False
        self._record(self.Retracted, ctx, reason=reason)
        return True

    class Retracted(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = DocumentStatus.RETRACTED
            aggregate.retraction_reason = self.reason

    def record_entities(
        self,
        extractor: str,
        model_digest: str,
        parameters: dict[str, Any],
        calls: list[dict[str, Any]],
        entities: list[dict[str, Any]],
        relations: list[dict[str, Any]],
        ctx: CommandContext,
    ) -> None:
        """Record what a model extracted from this document's chunks, once.

        ``calls`` holds each model call (chunk index, prompt, raw output) so the extraction can be
        audited and replayed; ``entities`` are ``{"name", "type", "chunks": [chunk indexes]}`` and
        ``relations`` ``{"source", "target", "type", "chunk"}``. Views use only this record: a
        rebuild or a re-ingest makes no model call.
        """
        self.require_registered()
        require_text("extractor", extractor, limit=MAX_NAME)
        require_text("model_digest", model_digest, limit=MAX_NAME)
        self._record(
            self.EntitiesExtracted,
            ctx,
            extractor=extractor,
            model_digest=model_digest,
            parameters=parameters,
            calls=calls,
            entities=entities,
            relations=relations,
        )

    class EntitiesExtracted(JanusAggregate.Event):
        extractor: str
        model_digest: str
        parameters: dict[str, Any]
        calls: list[dict[str, Any]]
        entities: list[dict[str, Any]]
        relations: list[dict[str, Any]]

    def require_registered(self) -> None:
        if self.status is not DocumentStatus.REGISTERED:
            raise InvalidTransition(f"document {self.id} is {self.status.value}")
