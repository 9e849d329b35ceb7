"""What the object and vector projections share: a registered document's text and provenance.

Both compute the same deterministic derivations (extraction, chunking) from the same events, so a
rebuild of either recomputes them without calling any model but the embedder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from adapters.blobs import BlobStore
from adapters.extraction import TextExtractor
from domain.document import Document
from event_store.reader import LoggedEvent

__all__ = ["Provenance", "registered_blob_key", "registered_text"]


@dataclass(frozen=True)
class Provenance:
    """Which event produced a derived object, stamped on it so verify can check it."""

    event_id: UUID
    position: int
    recorded_at: datetime

    @classmethod
    def of(cls, logged: LoggedEvent) -> Provenance:
        return cls(logged.event.meta.event_id, logged.position, logged.event.timestamp)


def registered_blob_key(event: Document.Registered) -> str:
    # The event names the blob it was recorded after (content-addressed by its sha256).
    return event.blob_key


def registered_text(blobs: BlobStore, extractor: TextExtractor, event: Document.Registered) -> str:
    """The document's text. A missing blob raises BlobNotFound: the log points at nothing, which
    must stall the projection visibly; an unreadable one raises ExtractionFailed, which must not."""
    data = blobs.get(registered_blob_key(event))
    return extractor.extract(data, event.content_type)
