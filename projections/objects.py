"""The object view's derived artifacts: each document's extracted text and chunk manifest, and
an audit bundle per finished goal (projections/bundles.py).

Run by a KnowledgeRunner (projections/knowledge.py). Keys are deterministic under a generation's
prefix (`views/objects/g1/...`), so a rebuild writes beside the live generation (blue/green) and a
replay rewrites the same objects; which generation is live is a pointer object the runner keeps.
Every object carries the event id and position that produced it (BlobStore metadata). The blob
store is not transactional, so the artifacts of a batch are written first and the position object
after.

A document whose text cannot be extracted gets a manifest with status "failed" and the reason,
and the projection moves on to the next event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from uuid import UUID

from adapters.blobs import BlobNotFound, BlobStore, canonical_json
from adapters.chunking import ChunkSpec, chunk_text
from adapters.extraction import ExtractionFailed, TextExtractor
from domain.document import Document
from event_store.reader import LoggedEvent
from projections.bundles import Stories, bundle_digest
from projections.documents import Provenance, registered_blob_key, registered_text
from projections.vector import Drift

__all__ = ["EXTRACTED", "FAILED", "ObjectProjection"]

DEFAULT_PREFIX = "views/objects/g1"
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
        self.failed: dict[UUID, str | None] = {}  # as VectorProjection.failed
        self._stories: Stories | None = None  # the goals' stories touched by this batch

    def text_key(self, document_id: UUID) -> str:
        return f"{self.prefix}/documents/{document_id}/text.txt"

    def manifest_key(self, document_id: UUID) -> str:
        return f"{self.prefix}/documents/{document_id}/manifest.json"

    def bundle_key(self, goal_id: UUID) -> str:
        return f"{self.prefix}/goals/{goal_id}.json"

    def story_key(self, goal_id: UUID) -> str:
        """An unfinished goal's story so far (working state, so a restart resumes it)."""
        return f"{self.prefix}/stories/{goal_id}.json"

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
        # Stories are read from the store afresh: a batch that failed halfway left nothing behind.
        self._stories = Stories(self._load_story)
        for logged in fresh:
            self.process_event(logged)
        self._write_stories()
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
        if self._stories is None:
            self._stories = Stories(self._load_story)
        self._stories.offer(logged)
        match logged.event:
            case Document.Registered() as event:
                self._extract(logged.originator_id, event, Provenance.of(logged))
            case Document.Retracted() as event:
                self._mark_retracted(logged.originator_id, event.reason, logged)
                self.failed[logged.originator_id] = None
            case _:
                pass

    def verify(self, events: Iterable[LoggedEvent]) -> Drift:
        """Compare the stored manifests (and whether each text object exists) and goal bundles
        with what `events` imply; a digest covers a manifest's or a bundle's whole content."""
        expected: dict[UUID, str] = {}
        manifests: dict[UUID, dict[str, Any]] = {}
        stories = Stories(lambda _: None)
        for logged in events:
            stories.offer(logged)
            document_id = logged.originator_id
            match logged.event:
                case Document.Registered() as event:
                    manifest, text = self._derive(document_id, event)
                    manifests[document_id] = manifest
                    expected[document_id] = _digest(manifest, text is not None)
                case Document.Retracted() as event:
                    gone = manifests.get(document_id, {"document_id": str(document_id)})
                    gone = gone | {"status": RETRACTED, "reason": event.reason, "chunks": []}
                    manifests[document_id] = gone
                    expected[document_id] = _digest(gone, False)
                case _:
                    pass
        actual = {
            document_id: _digest(
                dict(self.blobs.get_json(self.manifest_key(document_id))),
                self.blobs.exists(self.text_key(document_id)),
            )
            for document_id in self._stored_documents()
        }
        expected |= {goal: bundle_digest(b) for goal, (b, _) in stories.finished.items()}
        actual |= {
            goal_id: bundle_digest(self.blobs.get_json(self.bundle_key(goal_id)))
            for goal_id in self._stored_bundles()
        }
        return Drift(
            missing=sorted(expected.keys() - actual.keys()),
            unexpected=sorted(actual.keys() - expected.keys()),
            changed=sorted(i for i in expected.keys() & actual.keys() if expected[i] != actual[i]),
        )

    def _stored_documents(self) -> list[UUID]:
        found = []
        for key in self.blobs.list_keys(f"{self.prefix}/documents/"):
            if key.endswith("/manifest.json"):
                found.append(UUID(key.split("/")[-2]))
        return found

    def _stored_bundles(self) -> list[UUID]:
        return [
            UUID(key.rsplit("/", 1)[-1].removesuffix(".json"))
            for key in self.blobs.list_keys(f"{self.prefix}/goals/")
            if key.endswith(".json")
        ]

    def _load_story(self, goal_id: UUID) -> list[dict[str, Any]] | None:
        try:
            return list(self.blobs.get_json(self.story_key(goal_id))["events"])
        except BlobNotFound:
            return None

    def _write_stories(self) -> None:
        """The batch's open stories, then its bundles, then the finished stories' removal: a
        crash anywhere in between replays the batch onto the same objects."""
        stories, self._stories = self._stories, None
        if stories is None:
            return
        for goal_id in sorted(stories.changed):
            story = stories.open[goal_id]
            if story is not None:
                last = story[-1]
                self.blobs.put_json(
                    self.story_key(goal_id),
                    {"goal_id": str(goal_id), "events": story},
                    event_id=UUID(last["event_id"]),
                    position=int(last["position"]),
                )
        for goal_id, (bundle, finish) in sorted(stories.finished.items()):
            self.blobs.put_json(
                self.bundle_key(goal_id),
                bundle,
                event_id=finish.event.meta.event_id,
                position=finish.position,
                metadata={"goal-id": str(goal_id), "status": str(bundle["status"])},
            )
            self.blobs.delete(self.story_key(goal_id))

    def retract(self, document_id: UUID) -> None:
        """Remove a document's derived objects (its raw blob stays: it is source of truth)."""
        for key in (self.manifest_key(document_id), self.text_key(document_id)):
            self.blobs.delete(key)

    def _extract(self, document_id: UUID, event: Document.Registered, prov: Provenance) -> None:
        manifest, text = self._derive(document_id, event)
        self.failed[document_id] = manifest.get("reason") if text is None else None
        if text is not None:
            self.blobs.put_artifact(
                self.text_key(document_id),
                text.encode(),
                event_id=prov.event_id,
                position=prov.position,
                content_type="text/plain; charset=utf-8",
            )
        self._write_manifest(document_id, manifest, prov.event_id, prov.position)

    def _derive(
        self, document_id: UUID, event: Document.Registered
    ) -> tuple[dict[str, Any], str | None]:
        """A registered document's manifest and extracted text (None when extraction failed)."""
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
            return manifest | {"status": FAILED, "reason": failed.reason, "chunks": []}, None
        return manifest | {"status": EXTRACTED, "chunks": self._chunk_entries(text)}, text

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


def _digest(manifest: dict[str, Any], has_text: bool) -> str:
    return hashlib.sha256(canonical_json({"manifest": manifest, "text": has_text})).hexdigest()
