"""Entity extraction: a process manager that asks a model, once, what each document names.

It follows the log from its own tracked position (``extraction``) with the agent's loop
(``commands/process_manager.py``). For each ``Document.Registered`` it reads the bytes, extracts
and chunks the text exactly as the views do (``chunk_text`` with the same ``ChunkSpec``, so chunk
indexes name the views' chunks), asks the ``EntityModel`` once per chunk and records
``Document.EntitiesExtracted`` with the model's digest, its parameters, every call's prompt and
raw output, and the merged entities and relations.

At most one extraction is recorded per document: the record command carries the step key
``entities:<document id>``, whose command record is saved in the same transaction as the event, so
a second attempt (a crash before the tracked position moved, a re-run, a second writer) is refused
by the store. The key is also checked before any model call, so a document already extracted
costs no call however often the log is read again. A crash anywhere leaves either nothing recorded
(the document is extracted again) or the record (the document is skipped).

One extractor per log (the caller holds the ``extraction`` leader lock). Views never call the
model: they read the recorded event.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from pydantic import Field

from adapters.blobs import BlobStore
from adapters.chunking import Chunk, ChunkSpec, chunk_text
from adapters.entities import EntityCall, EntityModel
from adapters.extraction import ExtractionFailed, TextExtractor
from commands.errors import IdempotencyConflict, NotFound
from commands.invocation import CommandResult, Invocation
from commands.models import Command, Name
from commands.process_manager import ProcessManager
from commands.runner import CommandRunner, ContextFactory, Decided
from domain.command_record import command_record_id
from domain.document import Document, DocumentStatus
from domain.errors import InvalidTransition
from domain.meta import Actor, ActorKind
from event_store.application import JanusApplication

__all__ = [
    "DEFAULT_MAX_CHUNKS",
    "EntityExtraction",
    "Extraction",
    "RecordEntities",
    "extract_chunks",
    "extraction_key",
]

log = logging.getLogger(__name__)

REGISTERED = get_topic(Document.Registered)
DEFAULT_MAX_CHUNKS = 256
MAX_CHUNKS = 10_000
ACTOR = Actor(ActorKind.SYSTEM, "extraction")


def extraction_key(document_id: UUID) -> str:
    """The step key: one extraction per document, enforced by the command record's id."""
    return f"entities:{document_id}"


class RecordEntities(Command):
    document_id: UUID
    extractor: Name
    model_digest: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any]
    calls: list[dict[str, Any]] = Field(max_length=MAX_CHUNKS)
    entities: list[dict[str, Any]]
    relations: list[dict[str, Any]]


@dataclass(frozen=True)
class Extraction:
    """One document's extraction, in the shape ``Document.record_entities`` takes."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    relations: list[dict[str, Any]] = field(default_factory=list)


def extract_chunks(model: EntityModel, chunks: list[Chunk]) -> Extraction:
    """One model call per chunk; entities merged by (name, type) with every chunk naming them."""
    calls: list[dict[str, Any]] = []
    entities: dict[tuple[str, str], dict[str, Any]] = {}
    relations: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for chunk in chunks:
        call: EntityCall = model.extract(chunk.text)
        calls.append(
            {"chunk_index": chunk.index, "prompt": call.prompt, "raw_output": call.raw_output}
        )
        for entity in call.entities:
            key = (entity.name.casefold(), entity.type)
            found = entities.setdefault(
                key, {"name": entity.name, "type": entity.type, "chunks": []}
            )
            if chunk.index not in found["chunks"]:
                found["chunks"].append(chunk.index)
        for relation in call.relations:
            rkey = (relation.source, relation.target, relation.type, chunk.index)
            relations.setdefault(
                rkey,
                {
                    "source": relation.source,
                    "target": relation.target,
                    "type": relation.type,
                    "chunk": chunk.index,
                },
            )
    return Extraction(calls, list(entities.values()), list(relations.values()))


class EntityExtraction(ProcessManager[EntityModel]):
    name = "extraction"
    kept = "documents"

    def __init__(
        self,
        app: JanusApplication,
        runner: CommandRunner,
        model: EntityModel,
        blobs: BlobStore,
        text: TextExtractor,
        chunking: ChunkSpec,
        *,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        batch_size: int = 100,
    ) -> None:
        if not 1 <= max_chunks <= MAX_CHUNKS:
            raise ValueError(f"max_chunks must be 1-{MAX_CHUNKS}, got {max_chunks}")
        super().__init__(app, model, batch_size)
        self.runner = runner
        self.blobs = blobs
        self.text = text
        self.chunking = chunking
        self.max_chunks = max_chunks
        self.outcomes: Counter[str] = Counter()  # per document read: recorded, already_extracted...

    def handle(self, batch: list[Notification]) -> None:
        """Extract every document registered in the batch.

        The model is checked (and so loaded) only once a batch holds a document: a process that
        never sees one never loads it."""
        registered = [UUID(str(n.originator_id)) for n in batch if n.topic == REGISTERED]
        if registered:
            self.model.check()
        for document_id in registered:
            self.outcomes[self.extract(document_id)] += 1

    def extract(self, document_id: UUID) -> str:
        """Extract and record one document, unless it was already; returns the outcome."""
        key = extraction_key(document_id)
        if self.runner.exists(command_record_id(key)):
            return "already_extracted"
        try:
            document: Document = self.runner.load(Document, document_id)
        except NotFound:
            return "not_found"
        if document.status is not DocumentStatus.REGISTERED:
            return "retracted"
        try:
            text = self.text.extract(self.blobs.get(document.blob_key), document.content_type)
        except ExtractionFailed as failed:
            # Deterministic: the views find no text either, so there is nothing to name.
            log.info("extraction: document %s has no text: %s", document_id, failed.reason)
            return "no_text"
        chunks = chunk_text(text, self.chunking)
        extraction = extract_chunks(self.model, chunks[: self.max_chunks])
        parameters = {
            **self.model.parameters,
            "chunking": self.chunking.as_dict(),
            "chunks_total": len(chunks),
            "chunks_extracted": min(len(chunks), self.max_chunks),
        }
        return self._record(document_id, key, parameters, extraction)

    def _record(
        self, document_id: UUID, key: str, parameters: dict[str, Any], extraction: Extraction
    ) -> str:
        command = RecordEntities(
            document_id=document_id,
            extractor=self.model.name,
            model_digest=self.model.digest,
            parameters=parameters,
            calls=extraction.calls,
            entities=extraction.entities,
            relations=extraction.relations,
        )

        def decide(ctx: ContextFactory) -> Decided:
            document: Document = self.runner.load(Document, document_id)
            document.record_entities(
                command.extractor,
                command.model_digest,
                dict(command.parameters),
                list(command.calls),
                list(command.entities),
                list(command.relations),
                ctx(str(document_id)),
            )
            return Decided(document_id, "recorded", (document,))

        try:
            result: CommandResult = self.runner.run(
                command, Invocation(ACTOR, idempotency_key=key), decide
            )
        except IdempotencyConflict:
            return "already_extracted"  # another run recorded a (different) extraction first
        except InvalidTransition:
            return "retracted"  # retracted while the model was asked
        return "already_extracted" if result.replayed else result.outcome
