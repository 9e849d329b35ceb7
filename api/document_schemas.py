"""Documents over the wire: the upload's answer, the list, one document with each view's status."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field

from api.schemas import Body, CommandAccepted, Out, Reason


class DocumentAccepted(CommandAccepted):
    """``outcome``: registered (new), or already_registered (the same bytes from the same
    source: the first document's id, nothing new recorded)."""

    title: str
    source: str
    media_type: str
    size_bytes: int
    sha256: str


class DocumentOut(Out):
    id: UUID
    title: str
    source: str = Field(description="Where it came from: a file:// URI, a URL, upload:<name>.")
    media_type: str
    size_bytes: int
    sha256: str = Field(description="Of the raw bytes; GET .../content serves them.")
    blob_key: str = Field(description="Where the raw bytes are in the blob store.")
    status: str = Field(description="registered, or retracted (withdrawn from every view).")
    registered_at: datetime
    updated_at: datetime
    retraction_reason: str | None = None
    retracted_at: datetime | None = None


class ChunkOut(Out):
    index: int
    start: int = Field(description="Offset of the chunk in the extracted text.")
    length: int
    sha256: str


class DocumentInViewOut(Out):
    status: str = Field(description="The view's own word: extracted, failed, retracted, ...")
    reason: str | None = Field(default=None, description="Why it failed or was retracted.")
    position: int | None = Field(default=None, description="Log position the view wrote at.")
    chunk_count: int


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut] = Field(
        description="The chunks of its extracted text (from the object view, when it has them)."
    )
    views: dict[str, DocumentInViewOut] = Field(
        description="Each view that holds something for it, by name (a view not there yet has "
        "not reached the document)."
    )


class DocumentRetraction(Body):
    reason: Reason = Field(description="Why it is withdrawn, for the audit trail and the views.")


def document_out(row: Any) -> dict[str, Any]:
    """A documents row under the API's names."""
    values = dict(row)
    values["source"] = values.pop("source_uri")
    values["media_type"] = values.pop("content_type")
    return values
