"""Documents into a Janus the way ingestion does it: the bytes into the blob store first, then the
document's first event (``RegisterDocument``)."""

from __future__ import annotations

from uuid import UUID

from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind

OPERATOR = Invocation(Actor(ActorKind.USER, "olga", role="operator"))


def ingest(
    janus: Janus, text: str | bytes, source: str, media_type: str = "text/plain"
) -> tuple[UUID, int]:
    """The document's id and the log position of its registration."""
    data = text.encode() if isinstance(text, str) else text
    stored = janus.knowledge.blobs.put(data, media_type)
    result = janus.commands.register_document(
        m.RegisterDocument(
            source_uri=source,
            content_type=media_type,
            sha256=stored.sha256,
            size_bytes=stored.size,
        ),
        OPERATOR,
    )
    return result.aggregate_id, result.position


def retract(janus: Janus, document_id: UUID) -> int:
    result = janus.commands.retract_document(
        m.RetractDocument(document_id=document_id, reason="withdrawn"), OPERATOR
    )
    return result.position
