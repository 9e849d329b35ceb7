"""A document as each view sees it: the hook `GET /v1/documents/{id}` and `janus documents show`
read besides the relational row.

Each view that indexes documents offers a `ViewStatusReader`: given a document id, what that view
holds for it (None: nothing yet, e.g. its projector has not reached the document). Whether a
view has indexed a document is that view's state, never a domain fact, so it is read from the
view itself. The object view's reader is here; the others (vector, graph) add theirs in
`bootstrap.documents.document_view_readers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from adapters.blobs import BlobNotFound, BlobStore
from adapters.extraction import DocumentExtractor
from projections.generations import ObjectGenerations
from projections.objects import ObjectProjection

__all__ = ["DocumentInView", "ViewStatusReader", "object_view_reader", "views_of"]


@dataclass(frozen=True)
class DocumentInView:
    """``status``: extracted / failed / retracted in the object view (each view its own words);
    ``reason`` why it failed or was retracted; ``position`` the log position the view's record
    of it was written at; ``chunks`` the chunks it holds, when it holds any."""

    status: str
    reason: str | None = None
    position: int | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)


ViewStatusReader = Callable[[UUID], DocumentInView | None]


def object_view_reader(blobs: BlobStore) -> ViewStatusReader:
    """The object view's manifest of a document in the live generation: status and chunk list."""
    generations = ObjectGenerations(
        blobs, lambda prefix: ObjectProjection(blobs, DocumentExtractor(), prefix=prefix)
    )

    def read(document_id: UUID) -> DocumentInView | None:
        live = generations.live()
        if live is None:  # the object view has not started yet
            return None
        key = generations.open(live).manifest_key(document_id)
        try:
            manifest = blobs.get_json(key)
            position = blobs.stat(key).position
        except BlobNotFound:
            return None
        return DocumentInView(
            status=str(manifest.get("status", "unknown")),
            reason=manifest.get("reason"),
            position=position,
            chunks=list(manifest.get("chunks", [])),
        )

    return read


def views_of(
    document_id: UUID, readers: Mapping[str, ViewStatusReader]
) -> dict[str, DocumentInView]:
    """What every view holds for the document, by view name (views holding nothing left out)."""
    found = {name: read(document_id) for name, read in readers.items()}
    return {name: seen for name, seen in found.items() if seen is not None}
