"""One contract for every BlobStore: the filesystem twin, SeaweedFS (always) and MinIO (when set).

`BlobStoreContract` is abstract (pytest skips classes not named Test*); each implementation
subclasses it once and provides the `store` fixture, the way eventsourcing tests its recorders.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    FileBlobStore,
    InvalidBlobKey,
    blob_key_for,
    canonical_json,
)
from adapters.minio_blobs import MIN_PART_SIZE, MinioBlobStore
from tests.s3_server import S3Endpoint, unique_bucket

MIN_PART = MIN_PART_SIZE
BAD_KEYS = ["", "/abs", "../up", "a/../b", "a//b", "a/", ".hidden", "sp ace", "a/b?c", "x" * 600]


class BlobStoreContract:
    """Behaviour every BlobStore must show; subclasses provide `store` and `presigns`."""

    presigns: bool

    def test_put_stores_bytes_at_their_sha256_address(self, store: BlobStore) -> None:
        data = b"the quick brown fox"
        stored = store.put(data, "text/plain")

        sha = hashlib.sha256(data).hexdigest()
        assert (stored.key, stored.sha256, stored.size, stored.created) == (
            blob_key_for(sha),
            sha,
            len(data),
            True,
        )
        assert store.get(stored.key) == data
        assert store.exists(stored.key)
        info = store.stat(stored.key)
        assert (info.size, info.sha256, info.content_type) == (len(data), sha, "text/plain")

    def test_the_same_bytes_again_write_nothing_new(self, store: BlobStore) -> None:
        first = store.put(b"same bytes")
        again = store.put(b"same bytes")

        assert again.key == first.key
        assert (first.created, again.created) == (True, False)
        assert list(store.list_keys("sha256/")) == [first.key]

    def test_put_file_streams_a_multipart_sized_file(
        self, store: BlobStore, tmp_path: Path
    ) -> None:
        data = os.urandom(2 * MIN_PART + 1234)
        path = tmp_path / "big.bin"
        path.write_bytes(data)

        stored = store.put_file(path, "application/pdf")

        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert store.stat(stored.key).size == len(data)
        assert hashlib.sha256(store.get(stored.key)).hexdigest() == stored.sha256
        assert store.put_file(path).created is False

    def test_stream_yields_the_content_in_chunks(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 40
        key = store.put(data).key

        chunks = list(store.stream(key, chunk_size=1000))

        assert b"".join(chunks) == data
        assert len(chunks) > 1

    def test_artifacts_carry_event_id_and_position(self, store: BlobStore) -> None:
        event_id = uuid.uuid4()
        manifest = {"document": "d1", "chunks": [{"index": 0, "text": "é"}]}

        written = store.put_json(
            "views/v1/manifests/d1.json",
            manifest,
            event_id=event_id,
            position=42,
            metadata={"document-id": "d1"},
        )

        info = store.stat("views/v1/manifests/d1.json")
        assert info == written
        assert (info.event_id, info.position, info.content_type) == (
            event_id,
            42,
            "application/json",
        )
        assert info.metadata["document-id"] == "d1"
        assert info.sha256 == hashlib.sha256(canonical_json(manifest)).hexdigest()
        assert store.get_json("views/v1/manifests/d1.json") == manifest

    def test_rewriting_an_artifact_replaces_content_and_provenance(self, store: BlobStore) -> None:
        key = "views/v1/text/d2.txt"
        store.put_artifact(key, b"old", event_id=uuid.uuid4(), position=1)
        later = uuid.uuid4()

        store.put_artifact(key, b"new text", event_id=later, position=7, content_type="text/plain")

        info = store.stat(key)
        assert store.get(key) == b"new text"
        assert (info.size, info.event_id, info.position) == (8, later, 7)

    def test_a_missing_key_is_reported_not_invented(self, store: BlobStore) -> None:
        missing = blob_key_for("0" * 64)

        assert not store.exists(missing)
        with pytest.raises(BlobNotFound):
            store.get(missing)
        with pytest.raises(BlobNotFound):
            store.stat(missing)
        with pytest.raises(BlobNotFound):
            store.stream(missing)
        assert store.delete(missing) is False

    def test_delete_removes_once_and_is_safe_to_retry(self, store: BlobStore) -> None:
        key = store.put(b"to be retracted").key

        assert store.delete(key) is True
        assert store.delete(key) is False
        assert not store.exists(key)
        assert list(store.list_keys()) == []

    def test_list_keys_filters_by_prefix_in_order(self, store: BlobStore) -> None:
        for key in ["views/b/2", "views/a/1", "views/b/1", "other/x"]:
            store.put_artifact(key, key.encode(), event_id=uuid.uuid4(), position=0)

        assert list(store.list_keys("views/b/")) == ["views/b/1", "views/b/2"]
        assert list(store.list_keys("views/")) == ["views/a/1", "views/b/1", "views/b/2"]
        assert list(store.list_keys("views/b")) == ["views/b/1", "views/b/2"]
        assert list(store.list_keys("vie")) == ["views/a/1", "views/b/1", "views/b/2"]
        assert list(store.list_keys("nothing/")) == []
        assert len(list(store.list_keys())) == 4

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused_and_write_nothing(self, store: BlobStore, key: str) -> None:
        with pytest.raises(InvalidBlobKey):
            store.put_artifact(key, b"x", event_id=uuid.uuid4(), position=0)
        with pytest.raises(InvalidBlobKey):
            store.exists(key)
        assert list(store.list_keys()) == []

    def test_content_addresses_are_reserved_for_raw_blobs(self, store: BlobStore) -> None:
        forged = blob_key_for(hashlib.sha256(b"real").hexdigest())

        with pytest.raises(InvalidBlobKey):
            store.put_artifact(forged, b"forged", event_id=uuid.uuid4(), position=0)
        assert not store.exists(forged)

    @pytest.mark.parametrize(
        ("position", "metadata"),
        [(-1, {}), (0, {"Bad Name": "x"}), (0, {"janus-position": "9"}), (0, {"note": "é"})],
    )
    def test_bad_provenance_is_refused_and_writes_nothing(
        self, store: BlobStore, position: int, metadata: dict[str, str]
    ) -> None:
        with pytest.raises(ValueError):
            store.put_artifact(
                "views/v1/x", b"x", event_id=uuid.uuid4(), position=position, metadata=metadata
            )
        assert not store.exists("views/v1/x")

    def test_presigned_url_serves_the_bytes_or_store_streams(self, store: BlobStore) -> None:
        key = store.put(b"presign me").key

        url = store.presigned_url(key, timedelta(minutes=5))

        if not self.presigns:
            assert url is None
            return
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"presign me"


class TestFileBlobStore(BlobStoreContract):
    presigns = False

    @pytest.fixture
    def store(self, tmp_path: Path) -> FileBlobStore:
        return FileBlobStore(tmp_path / "blobs")

    def test_a_temp_file_left_by_a_crash_is_invisible(self, store: FileBlobStore) -> None:
        # What a SIGKILL in the middle of a write leaves behind: a temp file, never a key.
        (store.root / "tmp" / "put-crashed").write_bytes(b"half")

        assert list(store.list_keys()) == []
        stored = store.put(b"after restart")
        assert list(store.list_keys()) == [stored.key]

    def test_a_write_failing_midway_leaves_no_key_and_no_temp_file(
        self, store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_fsync, calls = os.fsync, []

        def failing_fsync(fd: int) -> None:
            # Writes go metadata file, its folder, then the object file: fail on the object.
            calls.append(fd)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space"):
            store.put(b"half written")
        monkeypatch.setattr(os, "fsync", real_fsync)

        assert list(store.list_keys()) == []
        assert list((store.root / "tmp").iterdir()) == []
        assert store.put(b"half written").created is True

    def test_a_key_cannot_also_be_a_prefix(self, store: FileBlobStore) -> None:
        store.put_artifact("views/a", b"x", event_id=uuid.uuid4(), position=0)

        with pytest.raises(InvalidBlobKey):
            store.put_artifact("views/a/b", b"y", event_id=uuid.uuid4(), position=0)
        assert list(store.list_keys()) == ["views/a"]

    def test_blobs_survive_a_new_store_on_the_same_folder(self, tmp_path: Path) -> None:
        stored = FileBlobStore(tmp_path / "b").put(b"durable", "text/plain")

        reopened = FileBlobStore(tmp_path / "b")

        assert reopened.get(stored.key) == b"durable"
        assert reopened.stat(stored.key).content_type == "text/plain"


class S3Contract(BlobStoreContract):
    presigns = True

    @pytest.fixture
    def endpoint(self) -> S3Endpoint:
        raise NotImplementedError

    @pytest.fixture
    def store(self, endpoint: S3Endpoint) -> MinioBlobStore:
        # A fresh bucket per test instead of teardown; MIN_PART makes put_file go multipart.
        return MinioBlobStore(
            endpoint.url,
            endpoint.access_key,
            endpoint.secret_key,
            unique_bucket(),
            part_size=MIN_PART,
        )

    def test_the_bucket_is_created_on_first_use(self, endpoint: S3Endpoint) -> None:
        bucket = unique_bucket()
        client = endpoint.client()
        assert not client.bucket_exists(bucket)

        MinioBlobStore(endpoint.url, endpoint.access_key, endpoint.secret_key, bucket).put(b"x")
        # A second store (another process) on the now existing bucket just uses it.
        again = MinioBlobStore(endpoint.url, endpoint.access_key, endpoint.secret_key, bucket)

        assert client.bucket_exists(bucket)
        assert again.put(b"x").created is False

    def test_large_files_go_up_in_parts(
        self, store: MinioBlobStore, endpoint: S3Endpoint, tmp_path: Path
    ) -> None:
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(2 * MIN_PART + 1))

        key = store.put_file(path).key

        # S3 gives a multipart object the ETag "<md5 of part md5s>-<part count>".
        etag = endpoint.client().stat_object(store.bucket, key).etag or ""
        assert etag.strip('"').endswith("-3")

    def test_wrong_credentials_fail_clearly(self, endpoint: S3Endpoint) -> None:
        store = MinioBlobStore(endpoint.url, endpoint.access_key, "wrong-secret", unique_bucket())

        with pytest.raises(BlobStoreError, match="bucket"):
            store.put(b"x")

    def test_a_non_http_endpoint_is_refused(self) -> None:
        with pytest.raises(ValueError, match="http"):
            MinioBlobStore("s3.example:9000", "a", "b", "bucket")


def test_an_unreachable_s3_server_is_the_stores_error_not_the_sdks() -> None:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = MinioBlobStore(f"http://127.0.0.1:{port}", "a", "b", unique_bucket())

    with pytest.raises(BlobStoreError, match="unreachable"):
        store.put(b"x")


class TestSeaweedBlobStore(S3Contract):
    @pytest.fixture
    def endpoint(self, seaweed_s3: S3Endpoint) -> S3Endpoint:
        return seaweed_s3


class TestMinioBlobStore(S3Contract):
    @pytest.fixture
    def endpoint(self, minio_s3: S3Endpoint) -> S3Endpoint:
        return minio_s3
