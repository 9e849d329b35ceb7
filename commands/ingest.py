"""Documents in: limits checked, bytes stored at their content address, then the document recorded.

The order is the guarantee. Everything a caller said is checked first (media type, size, source,
title), so bad input stores nothing and records nothing. The bytes go to the blob store next,
durably, and only then is `Document.Registered` recorded, naming them: an event never points at
nothing. A crash between the two leaves an unreferenced blob; ingesting again finds it there
(content-addressed, so the put writes nothing) and records the event once. The same bytes from
the same source are the same document: a repeat returns the first id and records nothing.

Whether the text can be extracted is not checked here: extraction is the views' deterministic
work, and a document without text is recorded as failed there, with the reason.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO
from uuid import UUID

from pydantic import AfterValidator, Field

from adapters.blobs import BlobStore
from adapters.extraction import SUPPORTED_MEDIA_TYPES, base_media_type, media_type_for
from adapters.faults import crash_point
from commands import models as m
from commands.errors import CommandError
from commands.invocation import Invocation
from commands.service import CommandService
from domain.document import title_from

__all__ = [
    "DocumentIngest",
    "DocumentTooLarge",
    "EmptyDocument",
    "IngestLimits",
    "IngestRefused",
    "Ingested",
    "UnsupportedMediaType",
]

COPY_CHUNK = 1024 * 1024


class IngestRefused(CommandError):
    """The document was refused before anything was stored or recorded."""

    code = "ingest-refused"


class DocumentTooLarge(IngestRefused):
    code = "content-too-large"


class UnsupportedMediaType(IngestRefused):
    code = "unsupported-media-type"


class EmptyDocument(IngestRefused):
    code = "empty-document"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Filled = Annotated[m.Safe, AfterValidator(_not_blank)]


class DescribeDocument(m.Command):
    """What a caller says about a document, checked before its bytes are stored (the limits are
    RegisterDocument's and the domain's)."""

    source_uri: Filled = Field(max_length=2_000)
    title: Filled = Field(max_length=500)
    content_type: Annotated[m.Name, AfterValidator(_not_blank)]


@dataclass(frozen=True)
class IngestLimits:
    max_bytes: int
    media_types: frozenset[str] = SUPPORTED_MEDIA_TYPES


@dataclass(frozen=True)
class Ingested:
    """One document in: ``outcome`` is registered (new) or already_registered (first id)."""

    document_id: UUID
    outcome: str
    position: int
    source_uri: str
    title: str
    content_type: str
    sha256: str
    size_bytes: int
    blob_key: str
    replayed: bool = False

    @property
    def new(self) -> bool:
        return self.outcome == "registered" and not self.replayed


class DocumentIngest:
    """The write path of documents; the blob store is a port, passed in."""

    def __init__(self, commands: CommandService, blobs: BlobStore, limits: IngestLimits) -> None:
        self.commands = commands
        self.blobs = blobs
        self.limits = limits

    def ingest_file(
        self,
        path: Path,
        inv: Invocation,
        *,
        source_uri: str | None = None,
        title: str | None = None,
        media_type: str | None = None,
    ) -> Ingested:
        """A file on this machine; its source is its absolute file:// URI unless given."""
        source = source_uri or path.resolve().as_uri()
        described = self.describe(source, title, media_type, path.name)
        self.check_size(path.stat().st_size)
        return self._store_and_register(path, described, inv)

    def ingest_stream(
        self,
        stream: BinaryIO,
        inv: Invocation,
        *,
        filename: str | None,
        source_uri: str,
        title: str | None = None,
        media_type: str | None = None,
    ) -> Ingested:
        """An upload: spooled to a temporary file (never held in memory), refused past the cap."""
        described = self.describe(source_uri, title or filename, media_type, filename)
        with self.spooled(stream) as path:
            return self._store_and_register(path, described, inv)

    def describe(
        self, source_uri: str, title: str | None, declared: str | None, filename: str | None
    ) -> DescribeDocument:
        """Check what the caller said; raises before anything is stored."""
        content_type = media_type_for(declared, filename)
        if content_type is None:
            raise UnsupportedMediaType(
                f"cannot tell the media type of {filename or 'the document'}: declare one of "
                f"{self._allowed()} or use a known file suffix"
            )
        if base_media_type(content_type) not in self.limits.media_types:
            raise UnsupportedMediaType(
                f"media type {base_media_type(content_type)!r} is not accepted; "
                f"accepted: {self._allowed()}"
            )
        return DescribeDocument(
            source_uri=source_uri,
            title=title or title_from(source_uri),
            content_type=content_type,
        )

    def check_size(self, size: int) -> None:
        if size > self.limits.max_bytes:
            raise DocumentTooLarge(
                f"the document is {size} bytes; the limit is {self.limits.max_bytes} "
                "(JANUS_INGEST_MAX_BYTES)"
            )
        if size == 0:
            raise EmptyDocument("the document is empty")

    @contextmanager
    def spooled(self, stream: BinaryIO) -> Iterator[Path]:
        """The stream in a temporary file, read no further than one byte past the cap."""
        with tempfile.TemporaryDirectory(prefix="janus-ingest-") as folder:
            path = Path(folder) / "document"
            with path.open("wb") as sink:
                shutil.copyfileobj(_Bounded(stream, self.limits.max_bytes + 1), sink)
            self.check_size(path.stat().st_size)
            yield path

    def _store_and_register(
        self, path: Path, described: DescribeDocument, inv: Invocation
    ) -> Ingested:
        stored = self.blobs.put_file(path, base_media_type(described.content_type))
        self.check_size(stored.size)  # the file may have grown since it was measured
        # A crash here leaves the blob unreferenced; the next ingest finds it and records once.
        crash_point("ingest.after_put")
        cmd = m.RegisterDocument(
            source_uri=described.source_uri,
            title=described.title,
            content_type=described.content_type,
            sha256=stored.sha256,
            size_bytes=stored.size,
            blob_key=stored.key,
        )
        result = self.commands.register_document(cmd, inv)
        return Ingested(
            document_id=result.aggregate_id,
            outcome=result.outcome,
            position=result.position,
            source_uri=described.source_uri,
            title=described.title,
            content_type=described.content_type,
            sha256=stored.sha256,
            size_bytes=stored.size,
            blob_key=stored.key,
            replayed=result.replayed,
        )

    def _allowed(self) -> str:
        return ", ".join(sorted(self.limits.media_types))


class _Bounded:
    """A reader that stops at `limit` bytes, so an endless upload is never spooled whole."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = COPY_CHUNK) -> bytes:
        if self._left <= 0:
            return b""
        chunk = self._stream.read(min(size if size > 0 else COPY_CHUNK, self._left))
        self._left -= len(chunk)
        return chunk


def sha256_of(stream: BinaryIO) -> str:
    """The digest of a seekable stream, left at its start again."""
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(COPY_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()
