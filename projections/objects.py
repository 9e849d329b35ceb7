"""The object view's derived artifacts: each document's extracted text and chunk manifest.

Not registered with any runner yet: the ingestion pipeline wires it once the Document events are
final. Keys are deterministic under a versioned prefix (`views/objects/v1/...`), so a rebuild
writes beside the live generation (blue/green) and a replay rewrites the same objects. Every object
carries the event id and position that produced it (BlobStore metadata). The blob store is not
transactional, so the artifacts of a batch are written first and the position object after.

A document whose text cannot be extracted gets a manifest with status "failed" and the reason,
and the projection moves on to the next event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

from adapters.blobs import BlobNotFound, BlobStore
from adapters.chunking import ChunkSpec, chunk_text
from adapters.extraction import ExtractionFailed, TextExtractor
from domain.document import Document
from event_store.reader import LoggedEvent
from projections.documents import Provenance, registered_blob_key, registered_text

__all__ = ["EXTRACTED", "FAILED", "ObjectProjection"]

DEFAULT_PREFIX = "views/objects/v1"
EXTRACTED, FAILED, RETRACTED = "extracted", "failed", "retracted"


class ObjectProjection:
    name: ClassVar[str] = "objects"

    def __init__(
        self,
        blobs: BlobStore,
        extractor: TextExtractor,
        chunking: ChunkSpec | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.blobs = blobs
        self.extractor = extractor
        self.chunking = chunking or ChunkSpec()
        self.prefix = prefix.rstrip("/")
        self._position: int | None = None

    def text_key(self, document_id: UUID) -> str:
        return f"{self.prefix}/documents/{document_id}/text.txt"

    def manifest_key(self, document_id: UUID) -> str:
        return f"{self.prefix}/documents/{document_id}/manifest.json"

    @property
    def position_key(self) -> str:
        return f"{self.prefix}/position.json"

    def start(self) -> int:
        """The position to resume after, read from the store (0: from the start)."""
        try:
            self._position = int(self.blobs.get_json(self.position_key)["position"])
        except BlobNotFound:
            self._position = 0
        return self._position

    @property
    def position(self) -> int:
        if self._position is None:
            raise RuntimeError("call start() before applying events")
        return self._position

    def apply(self, events: Sequence[LoggedEvent]) -> int:
        """Apply a batch in order, then store its last position; returns how many were new."""
        fresh = [e for e in events if e.position > self.position]
        for logged in fresh:
            self.process_event(logged)
        if fresh:
            last = fresh[-1]
            # After the artifacts: a crash before this replays the batch onto the same keys.
            state = {"position": last.position, "chunking": self.chunking.as_dict()}
            self.blobs.put_json(
                self.position_key, state, event_id=last.event.meta.event_id, position=last.position
            )
            self._position = last.position
        return len(fresh)

    def process_event(self, logged: LoggedEvent) -> None:
        match logged.event:
            case Document.Registered() as event:
                self._extract(logged.originator_id, event, Provenance.of(logged))
            case Document.Retracted() as event:
                self._mark_retracted(logged.originator_id, event.reason, logged)
            case _:
                pass

    def retract(self, document_id: UUID) -> None:
        """Remove a document's derived objects (its raw blob stays: it is source of truth)."""
        for key in (self.manifest_key(document_id), self.text_key(document_id)):
            self.blobs.delete(key)

    def _extract(self, document_id: UUID, event: Document.Registered, prov: Provenance) -> None:
        manifest: dict[str, Any] = {
            "document_id": str(document_id),
            "source": event.source_uri,
            "media_type": event.content_type,
            "sha256": event.sha256,
            "size": event.size_bytes,
            "blob_key": registered_blob_key(event),
            "chunking": self.chunking.as_dict(),
        }
        try:
            text = registered_text(self.blobs, self.extractor, event)
        except ExtractionFailed as failed:
            manifest |= {"status": FAILED, "reason": failed.reason, "chunks": []}
        else:
            self.blobs.put_artifact(
                self.text_key(document_id),
                text.encode(),
                event_id=prov.event_id,
                position=prov.position,
                content_type="text/plain; charset=utf-8",
            )
            manifest |= {"status": EXTRACTED, "chunks": self._chunk_entries(text)}
        self._write_manifest(document_id, manifest, prov.event_id, prov.position)

    def _chunk_entries(self, text: str) -> list[dict[str, Any]]:
        return [
            {
                "index": chunk.index,
                "start": chunk.start,
                "length": len(chunk.text),
                "sha256": hashlib.sha256(chunk.text.encode()).hexdigest(),
            }
            for chunk in chunk_text(text, self.chunking)
        ]

    def _mark_retracted(self, document_id: UUID, reason: str, logged: LoggedEvent) -> None:
        # The manifest stays, saying why the document is gone; its text and chunks do not.
        try:
            manifest = dict(self.blobs.get_json(self.manifest_key(document_id)))
        except BlobNotFound:
            manifest = {"document_id": str(document_id)}
        manifest |= {"status": RETRACTED, "reason": reason, "chunks": []}
        self.blobs.delete(self.text_key(document_id))
        self._write_manifest(document_id, manifest, logged.event.meta.event_id, logged.position)

    def _write_manifest(
        self, document_id: UUID, manifest: dict[str, Any], event_id: UUID, position: int
    ) -> None:
        self.blobs.put_json(
            self.manifest_key(document_id),
            manifest,
            event_id=event_id,
            position=position,
            metadata={"document-id": str(document_id), "status": str(manifest["status"])},
        )
