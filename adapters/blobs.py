"""The object view's port: raw blobs keyed by their sha256, derived artifacts at deterministic keys.

Raw blobs are part of the source of truth: a document's first event names a blob key, so the bytes
are stored (and durable) before that event is recorded. A crash in between leaves at most an
unreferenced blob. Derived artifacts (extracted text, chunk manifests, audit bundles) are written by
projectors from events and carry the event id and log position that produced them, so a verifier
can tell what the log implies from what is stored.

`FileBlobStore` (here) is the in-process twin; `MinioBlobStore` (adapters/minio_blobs.py) talks S3
through the official `minio` SDK (MinIO, SeaweedFS, AWS). One contract suite
(tests/integration/test_blob_contract.py) runs on both.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

from domain.document import content_key

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "FileBlobStore",
    "InvalidBlobKey",
    "StoredBlob",
    "blob_key_for",
    "canonical_json",
    "check_key",
    "check_prefix",
    "user_metadata",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
READ_CHUNK = 1024 * 1024
CONTENT_PREFIX = "sha256/"
# Portable object names: S3-safe, and no component a filesystem would treat specially.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*$")
MAX_KEY_LENGTH = 512
# User metadata names: lowercase so they survive S3's case folding of headers unchanged.
META_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
META_SHA256 = "janus-sha256"
META_EVENT_ID = "janus-event-id"
META_POSITION = "janus-position"


class BlobStoreError(Exception):
    """A blob store refused or failed an operation."""


class BlobNotFound(BlobStoreError, LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no blob at {key!r}")
        self.key = key


class InvalidBlobKey(BlobStoreError, ValueError):
    pass


@dataclass(frozen=True)
class StoredBlob:
    """What a content-addressed put did; `created` is False when the bytes were there already."""

    key: str
    sha256: str
    size: int
    created: bool


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    sha256: str
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> UUID | None:
        value = self.metadata.get(META_EVENT_ID)
        return UUID(value) if value else None

    @property
    def position(self) -> int | None:
        value = self.metadata.get(META_POSITION)
        return int(value) if value else None


def blob_key_for(sha256: str) -> str:
    """The content address of a raw blob (the layout is the domain's: events name these keys)."""
    return content_key(sha256)


def canonical_json(document: Any) -> bytes:
    """One byte string per value: a rewritten artifact is byte-identical, its digest stable."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.match(key):
        raise InvalidBlobKey(
            f"invalid blob key {key!r}: use 1-{MAX_KEY_LENGTH} characters of letters, digits and"
            " . _ = -, in '/'-separated parts that start with a letter or digit"
        )
    return key


def check_prefix(prefix: str) -> str:
    if prefix and not KEY_PATTERN.match(prefix.rstrip("/")):
        raise InvalidBlobKey(f"invalid blob key prefix {prefix!r}")
    return prefix


def artifact_metadata(
    event_id: UUID | str, position: int, extra: Mapping[str, str] | None
) -> dict[str, str]:
    if position < 0:
        raise ValueError("position must not be negative")
    metadata = {META_EVENT_ID: str(UUID(str(event_id))), META_POSITION: str(position)}
    for name, value in (extra or {}).items():
        if not META_NAME.match(name) or name.startswith("janus-"):
            raise ValueError(f"invalid metadata name {name!r}: lowercase, digits, '-', no janus-")
        if not value.isascii():
            raise ValueError(f"metadata {name!r} must be ASCII (S3 headers are)")
        metadata[name] = value
    return metadata


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class BlobStore(ABC):
    """Content-addressed raw blobs plus keyed artifacts with provenance metadata."""

    def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> StoredBlob:
        """Store `data` at its content address; storing the same bytes again writes nothing."""
        sha256 = hashlib.sha256(data).hexdigest()
        key = blob_key_for(sha256)
        if self.exists(key):
            return StoredBlob(key, sha256, len(data), created=False)
        self._write(key, io.BytesIO(data), len(data), content_type, {META_SHA256: sha256})
        return StoredBlob(key, sha256, len(data), created=True)

    def put_file(self, path: Path, content_type: str = DEFAULT_CONTENT_TYPE) -> StoredBlob:
        """Like `put`, streamed from a file (multipart on S3), never holding it all in memory."""
        sha256, size = _hash_file(path)
        key = blob_key_for(sha256)
        if self.exists(key):
            return StoredBlob(key, sha256, size, created=False)
        with path.open("rb") as source:
            self._write(key, source, size, content_type, {META_SHA256: sha256})
        return StoredBlob(key, sha256, size, created=True)

    def put_artifact(
        self,
        key: str,
        data: bytes,
        *,
        event_id: UUID | str,
        position: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Write (or overwrite) a derived object at a deterministic key, with its provenance."""
        check_key(key)
        if key.startswith(CONTENT_PREFIX):
            raise InvalidBlobKey(f"{CONTENT_PREFIX} is reserved for content-addressed blobs")
        meta = artifact_metadata(event_id, position, metadata)
        meta[META_SHA256] = hashlib.sha256(data).hexdigest()
        self._write(key, io.BytesIO(data), len(data), content_type, meta)
        return BlobInfo(key, len(data), meta[META_SHA256], content_type, user_metadata(meta))

    def put_json(
        self,
        key: str,
        document: Any,
        *,
        event_id: UUID | str,
        position: int,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        data = canonical_json(document)
        return self.put_artifact(
            key,
            data,
            event_id=event_id,
            position=position,
            content_type=JSON_CONTENT_TYPE,
            metadata=metadata,
        )

    def get(self, key: str) -> bytes:
        return b"".join(self.stream(key))

    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    @abstractmethod
    def stream(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks; raises BlobNotFound before the first chunk if missing."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> BlobInfo: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; False (not an error) when it was not there, so retries are safe."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`, in lexicographic order."""

    @abstractmethod
    def presigned_url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        """A time-limited GET URL, or None when the store can only stream (the filesystem twin)."""

    @abstractmethod
    def _write(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        """Store exactly `size` bytes from `source` at `key`, all or nothing."""


def user_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Stored metadata minus the content digest, which BlobInfo carries as a field."""
    return {k: v for k, v in metadata.items() if k != META_SHA256}


class FileBlobStore(BlobStore):
    """Objects as files under `root/objects`, metadata as JSON under `root/meta`.

    Writes are atomic: a temp file in `root/tmp` (same filesystem), fsync, rename, fsync of the
    directory. The metadata is renamed into place before the object, and the object is what makes a
    key exist, so a crash never shows an object without metadata; a crash between the two renames
    of an overwrite leaves the new metadata beside the old bytes, which the projector's rewrite (its
    position was not advanced) repairs. `stat` reports the size of the bytes actually there.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects = root / "objects"
        self._meta = root / "meta"
        self._tmp = root / "tmp"
        for folder in (self._objects, self._meta, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def _object_path(self, key: str) -> Path:
        return self._objects / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self._meta / f"{check_key(key)}.json"

    def _write(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        record = {"content_type": content_type, "metadata": dict(metadata)}
        self._atomic_write(self._meta_path(key), io.BytesIO(canonical_json(record)))
        written = self._atomic_write(self._object_path(key), source)
        if written != size:
            raise BlobStoreError(f"wrote {written} bytes to {key!r}, expected {size}")

    def _atomic_write(self, target: Path, source: BinaryIO) -> int:
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as sink:
                shutil.copyfileobj(source, sink, READ_CHUNK)
                sink.flush()
                os.fsync(sink.fileno())
                written = sink.tell()
            _make_parents(target)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)
        return written

    def stream(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        try:
            handle = self._object_path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key) from None
        return _file_chunks(handle, chunk_size)

    def exists(self, key: str) -> bool:
        return self._object_path(key).is_file()

    def stat(self, key: str) -> BlobInfo:
        path = self._object_path(key)
        try:
            size = path.stat().st_size
            record = json.loads(self._meta_path(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        if not path.is_file():
            raise BlobNotFound(key)
        metadata: dict[str, str] = record["metadata"]
        return BlobInfo(
            key, size, metadata[META_SHA256], record["content_type"], user_metadata(metadata)
        )

    def delete(self, key: str) -> bool:
        path = self._object_path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return False
        # The object went first, so the key no longer exists even if we crash before this.
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(key).unlink()
        return True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        # Walk only the folder the prefix names in full ("views/v1/" of "views/v1/tex").
        top = self._objects / prefix.rpartition("/")[0]
        if not top.is_dir():
            return iter([])
        keys = (
            path.relative_to(self._objects).as_posix() for path in top.rglob("*") if path.is_file()
        )
        return iter(sorted(key for key in keys if key.startswith(prefix)))

    def presigned_url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        check_key(key)
        return None


def _file_chunks(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _make_parents(target: Path) -> None:
    # S3 lets "a" and "a/b" coexist; a filesystem cannot, so the twin refuses the second clearly.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InvalidBlobKey(f"{target}: a parent of this key is already a key") from exc
    if target.is_dir():
        raise InvalidBlobKey(f"{target}: this key is already a prefix of other keys")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
