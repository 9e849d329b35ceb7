"""The vector view: chunks of every registered document, embedded, searchable, rebuildable.

Run by a KnowledgeRunner (projections/knowledge.py), which also keeps the generations. The
target (a VectorIndex) is not transactional with the log, so a batch is applied as idempotent
upserts first (deterministic point ids: uuid5(document, chunk index, model digest)) and the
position is stored in the collection after. A crash in between replays the batch into the
same points; events at or below the stored position are skipped.

The collection name carries the model (`<prefix>__<model>-<digest12>`): another model is another
collection, built beside the live one and switched to by alias (blue/green): readers resolve the
alias (`prefix`), each generation is a collection of its own (`collection`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from adapters.blobs import BlobStore, canonical_json
from adapters.chunking import Chunk, ChunkSpec, chunk_id, chunk_text, collection_name
from adapters.embeddings import Embedder
from adapters.extraction import ExtractionFailed, TextExtractor
from adapters.vectors import Distance, VectorIndex, VectorPoint
from domain.document import Document
from event_store.reader import LoggedEvent
from projections.documents import Provenance, registered_blob_key, registered_text

__all__ = ["Drift", "VectorProjection", "payload_digest"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "chunks"
# Chunks embedded and upserted per call, across documents (the embedder batches within it).
DEFAULT_EMBED_BATCH = 256


@dataclass(frozen=True)
class Drift:
    """Points the log implies but the view lacks, the reverse, and points whose payload differs."""

    missing: list[UUID]
    unexpected: list[UUID]
    changed: list[UUID]

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.changed)


def payload_digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(payload))).hexdigest()


class VectorProjection:
    name: ClassVar[str] = "vector"

    def __init__(
        self,
        index: VectorIndex,
        embedder: Embedder,
        blobs: BlobStore,
        extractor: TextExtractor,
        chunking: ChunkSpec | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        embed_batch: int = DEFAULT_EMBED_BATCH,
        collection: str | None = None,
    ) -> None:
        if embed_batch <= 0:
            raise ValueError("embed_batch must be positive")
        self.index = index
        self.embedder = embedder
        self.blobs = blobs
        self.extractor = extractor
        self.chunking = chunking or ChunkSpec()
        self.alias = prefix
        self.base = collection_name(prefix, embedder)
        self.collection = collection or self.base
        self.embed_batch = embed_batch
        self._position: int | None = None
        # Documents whose text could not be extracted (reason), or None once they no longer
        # fail (indexed again, retracted); the runner records and clears them.
        self.failed: dict[UUID, str | None] = {}
        self._pending: list[tuple[UUID, Document.Registered, Provenance, Chunk]] = []

    def spec(self) -> dict[str, Any]:
        """What this view is built with; a change of any of it needs a rebuild."""
        return {
            "collection": self.collection,
            "model": self.embedder.model_name,
            "model_digest": self.embedder.digest,
            "dim": self.embedder.dim,
            "chunking": self.chunking.as_dict(),
        }

    def start(self) -> int:
        """Create the collection if needed; the position to resume after (0: from the start)."""
        self.index.ensure_collection(self.collection, self.embedder.dim, Distance.COSINE)
        self._position = self.index.get_position(self.collection) or 0
        return self._position

    @property
    def position(self) -> int:
        if self._position is None:
            raise RuntimeError("call start() before applying events")
        return self._position

    def apply(self, events: Sequence[LoggedEvent]) -> int:
        """Apply a batch in order, then store its last position; returns how many were new."""
        fresh = [e for e in events if e.position > self.position]
        try:
            for logged in fresh:
                self.process_event(logged)
            self.flush()
        except BaseException:
            self._pending = []  # the batch is applied again from the stored position
            raise
        if fresh:
            # After the upserts: a crash before this line replays the batch into the same points.
            self.index.set_position(self.collection, fresh[-1].position)
            self._position = fresh[-1].position
        return len(fresh)

    def process_event(self, logged: LoggedEvent) -> None:
        match logged.event:
            case Document.Registered() as event:
                self._index(logged.originator_id, event, Provenance.of(logged))
            case Document.Retracted():
                self.retract(logged.originator_id)
                self.failed[logged.originator_id] = None
            case _:
                pass

    def retract(self, document_id: UUID) -> None:
        """Remove a document's points (a retraction or a failed ingestion)."""
        self.flush()  # points of earlier events first, so none of them outlives the delete
        self.index.delete_by_document(self.collection, document_id)

    def flush(self) -> None:
        """Embed and upsert the buffered chunks: across documents, in batches, so the model and
        the index see a few large calls rather than one small one per document."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.embed_batch):
            part = pending[start : start + self.embed_batch]
            vectors = self.embedder.embed_documents([chunk.text for *_, chunk in part])
            points = [
                self._point(document_id, event, prov, chunk, vector)
                for (document_id, event, prov, chunk), vector in zip(part, vectors, strict=True)
            ]
            self.index.upsert(self.collection, points)

    def _index(self, document_id: UUID, event: Document.Registered, prov: Provenance) -> None:
        try:
            text = registered_text(self.blobs, self.extractor, event)
        except ExtractionFailed as failed:
            # The object view records the reason; here the document simply has no chunks.
            log.info("vector view: document %s has no text: %s", document_id, failed.reason)
            self.failed[document_id] = failed.reason
            return
        self.failed[document_id] = None
        self._pending.extend(
            (document_id, event, prov, chunk) for chunk in chunk_text(text, self.chunking)
        )
        if len(self._pending) >= self.embed_batch:
            self.flush()

    def verify(self, events: Iterable[LoggedEvent]) -> Drift:
        """Compare the stored points (ids and payload digests) with what `events` imply.

        Embeddings are not recomputed: a point's vector follows from its payload's text and the
        model digest in its id, so ids plus payloads pin the view down.
        """
        expected = self._expected_digests(events)
        actual = {
            point.id: payload_digest(point.payload) for point in self.index.points(self.collection)
        }
        return Drift(
            missing=sorted(expected.keys() - actual.keys()),
            unexpected=sorted(actual.keys() - expected.keys()),
            changed=sorted(i for i in expected.keys() & actual.keys() if expected[i] != actual[i]),
        )

    def _expected_digests(self, events: Iterable[LoggedEvent]) -> dict[UUID, str]:
        registered: dict[UUID, tuple[Document.Registered, Provenance]] = {}
        for logged in events:
            match logged.event:
                case Document.Registered() as event:
                    registered[logged.originator_id] = (event, Provenance.of(logged))
                case Document.Retracted():
                    registered.pop(logged.originator_id, None)
                case _:
                    pass
        digests: dict[UUID, str] = {}
        for document_id, (event, prov) in registered.items():
            try:
                text = registered_text(self.blobs, self.extractor, event)
            except ExtractionFailed:
                continue
            for chunk in chunk_text(text, self.chunking):
                point_id = chunk_id(document_id, chunk.index, self.embedder.digest)
                digests[point_id] = payload_digest(self._payload(document_id, event, prov, chunk))
        return digests

    def _point(
        self,
        document_id: UUID,
        event: Document.Registered,
        prov: Provenance,
        chunk: Chunk,
        vector: list[float],
    ) -> VectorPoint:
        payload = self._payload(document_id, event, prov, chunk)
        point_id = chunk_id(document_id, chunk.index, self.embedder.digest)
        return VectorPoint(point_id, vector, payload)

    def _payload(
        self, document_id: UUID, event: Document.Registered, prov: Provenance, chunk: Chunk
    ) -> dict[str, Any]:
        return {
            "document_id": str(document_id),
            "chunk_index": chunk.index,
            "text": chunk.text,
            "start": chunk.start,
            "sha256": event.sha256,
            "blob_key": registered_blob_key(event),
            "source": event.source_uri,
            "title": event.title,
            "media_type": event.content_type,
            "event_id": str(prov.event_id),
            "position": prov.position,
            # Seconds since the epoch: what a time-range filter (Between) compares.
            "recorded_at": prov.recorded_at.timestamp(),
        }
