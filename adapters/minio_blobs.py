"""`MinioBlobStore`: the BlobStore port on S3 through the official `minio` SDK.

Runs on MinIO, SeaweedFS's S3 gateway and AWS. The contract lives with the port in
adapters/blobs.py; the contract suite runs this store on a real SeaweedFS (and MinIO when set).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from adapters.blobs import (
    DEFAULT_CONTENT_TYPE,
    META_SHA256,
    READ_CHUNK,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    check_key,
    check_prefix,
    user_metadata,
)

__all__ = ["DEFAULT_PART_SIZE", "MIN_PART_SIZE", "MinioBlobStore"]

# S3 refuses parts under 5 MiB (except the last one); 16 MiB keeps the part count low for big PDFs.
DEFAULT_PART_SIZE = 16 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
S3_META_PREFIX = "x-amz-meta-"
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
BUCKET_EXISTS_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


class MinioBlobStore(BlobStore):
    """S3 through the `minio` SDK; the bucket is created on first use (racing creators agree)."""

    def __init__(
        self,
        url: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"S3 endpoint must be an http(s) URL, got {url!r}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (an S3 limit)")
        self.bucket = bucket
        self.endpoint = parts.netloc
        self.part_size = part_size
        self._client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            region=region,
        )
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            with _reachable(self.endpoint):
                if not self._client.bucket_exists(self.bucket):
                    self._client.make_bucket(self.bucket)
        except S3Error as exc:
            # Another process created it between our check and our create: that is success.
            if exc.code not in BUCKET_EXISTS_CODES:
                raise BlobStoreError(
                    f"S3 bucket {self.bucket!r} unusable: {exc.code}: {exc.message}"
                ) from exc
        self._bucket_ready = True

    def _write(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        self._ensure_bucket()
        # A single PUT below part_size; above it the SDK uploads parts and completes the upload
        # only when all arrived, so a reader never sees a partial object.
        with _reachable(self.endpoint):
            self._client.put_object(
                self.bucket,
                check_key(key),
                source,
                size,
                content_type=content_type,
                metadata=dict(metadata),
                part_size=self.part_size,
            )

    def stream(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        self._ensure_bucket()
        try:
            with _reachable(self.endpoint):
                response = self._client.get_object(self.bucket, check_key(key))
        except S3Error as exc:
            raise _translated(exc, key) from exc
        return _response_chunks(response, chunk_size)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except BlobNotFound:
            return False
        return True

    def stat(self, key: str) -> BlobInfo:
        self._ensure_bucket()
        try:
            with _reachable(self.endpoint):
                found = self._client.stat_object(self.bucket, check_key(key))
        except S3Error as exc:
            raise _translated(exc, key) from exc
        metadata = _s3_user_metadata(found.metadata or {})
        return BlobInfo(
            key,
            int(found.size or 0),
            metadata.get(META_SHA256, ""),
            found.content_type or DEFAULT_CONTENT_TYPE,
            user_metadata(metadata),
        )

    def delete(self, key: str) -> bool:
        # S3 DELETE succeeds on a missing key, so ask first to report whether anything went.
        if not self.exists(key):
            return False
        with _reachable(self.endpoint):
            self._client.remove_object(self.bucket, key)
        return True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        self._ensure_bucket()
        with _reachable(self.endpoint):
            found = self._client.list_objects(
                self.bucket, prefix=check_prefix(prefix), recursive=True
            )
            names = sorted(obj.object_name for obj in found if obj.object_name is not None)
        return iter(names)

    def presigned_url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        self._ensure_bucket()
        return self._client.presigned_get_object(self.bucket, check_key(key), expires=expires)


@contextmanager
def _reachable(endpoint: str) -> Iterator[None]:
    """A server that cannot be reached is the store's error (a 503 upstream), not the SDK's."""
    try:
        yield
    except (HTTPError, OSError) as exc:
        raise BlobStoreError(f"S3 at {endpoint} unreachable: {type(exc).__name__}") from exc


def _translated(exc: S3Error, key: str) -> Exception:
    if exc.code in NOT_FOUND_CODES:
        return BlobNotFound(key)
    return BlobStoreError(f"S3 refused {key!r}: {exc.code}: {exc.message}")


def _s3_user_metadata(headers: Mapping[str, Any]) -> dict[str, str]:
    # Servers differ in the case of returned header names (MinIO title-cases, SeaweedFS keeps ours).
    return {
        name.lower().removeprefix(S3_META_PREFIX): str(value)
        for name, value in headers.items()
        if name.lower().startswith(S3_META_PREFIX)
    }


def _response_chunks(response: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from response.stream(chunk_size)
    finally:
        response.close()
        response.release_conn()
