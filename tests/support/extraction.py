"""Helpers for the knowledge tests: documents ingested through the real commands, and an entity
model that counts its calls (the graph must make none on a rebuild)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from adapters.blobs import BlobStore
from adapters.entities import EntityCall, EntityModel, RulesEntityModel
from bootstrap.container import Janus
from commands import models as m
from domain.document import Document
from event_store.reader import LoggedEvent
from tests.support.commands import as_alice


class CountingEntityModel(EntityModel):
    """The rules twin, counting calls; `before_call` runs first (to stage races)."""

    def __init__(self, before_call: Callable[[], object] | None = None) -> None:
        self.inner = RulesEntityModel()
        self.name = self.inner.name
        self.calls = 0
        self.before_call = before_call

    @property
    def digest(self) -> str:
        return self.inner.digest

    @property
    def parameters(self) -> dict[str, Any]:
        return self.inner.parameters

    def extract(self, text: str) -> EntityCall:
        self.calls += 1
        if self.before_call is not None:
            hook, self.before_call = self.before_call, None
            hook()
        return self.inner.extract(text)


def ingest_text(janus: Janus, blobs: BlobStore, text: str, source: str) -> UUID:
    """Store the bytes, then register the document (the write path's order)."""
    stored = blobs.put(text.encode(), "text/plain")
    result = janus.commands.register_document(
        m.RegisterDocument(
            source_uri=source,
            content_type="text/plain",
            sha256=stored.sha256,
            size_bytes=stored.size,
            blob_key=stored.key,
        ),
        as_alice(),
    )
    return result.aggregate_id


def logged(janus: Janus) -> list[LoggedEvent]:
    """The whole log, decoded."""
    return [janus.reader.decode(n) for n in janus.reader.read_after(0, 100_000)]


def extractions(janus: Janus, document_id: UUID) -> list[Document.EntitiesExtracted]:
    return [
        e.event
        for e in logged(janus)
        if e.originator_id == document_id and isinstance(e.event, Document.EntitiesExtracted)
    ]


def build_graph_view(janus: Janus) -> None:
    """The graph view (behind its alias `graph`) caught up with the whole log, as the runtime
    keeps it; its chunk ids use `janus.knowledge.embedder.digest`."""
    janus.knowledge_views["graph"].catch_up()
