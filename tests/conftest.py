"""Session-wide real servers for tests; the resolution rules live in tests/servers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.graph_server import FalkorDBServer
from tests.s3_server import ENV_MINIO_URL, S3Endpoint, SeaweedS3, minio_endpoint
from tests.servers import (
    ENV_DATABASE_URL,
    ENV_NATS_URL,
    LOCAL_DATABASE_URL,
    LOCAL_NATS_URL,
    EmbeddedPostgres,
    NatsServer,
    configured_url,
    create_database,
    database_url,
    drop_databases,
)

# Tests that script decisions by hand run without the agent deciding beside them; the agent's
# own tests turn it on (Settings(agent_enabled=True), or the variable for child processes).
os.environ.setdefault("JANUS_AGENT_ENABLED", "false")
# Entity extraction likewise: its own tests run it (tests/integration/test_entity_extraction.py).
os.environ.setdefault("JANUS_EXTRACTION_ENABLED", "false")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL server the session uses (existing or throwaway)."""
    url = configured_url(ENV_DATABASE_URL, LOCAL_DATABASE_URL)
    if url is not None:
        yield url
        return
    # The context manager stops and deletes the cluster even when the session fails.
    with EmbeddedPostgres() as server:
        yield server.url


@pytest.fixture(scope="session")
def _pg_session_databases(pg_server_url: str) -> Iterator[list[str]]:
    # Depends on pg_server_url so it is torn down (databases dropped) before the server stops.
    names: list[str] = []
    try:
        yield names
    finally:
        drop_databases(pg_server_url, names)


@pytest.fixture
def pg_url(pg_server_url: str, _pg_session_databases: list[str]) -> str:
    """URL of a fresh, uniquely named database (janus_t_<hex12>), dropped at session end."""
    dbname = create_database(pg_server_url)
    _pg_session_databases.append(dbname)
    return database_url(pg_server_url, dbname)


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """`nats://host:port` of a JetStream-enabled server shared by the session."""
    url = configured_url(ENV_NATS_URL, LOCAL_NATS_URL)
    if url is not None:
        yield url
        return
    with NatsServer() as server:
        yield server.url


@pytest.fixture
def nats_server_control() -> Iterator[NatsServer]:
    """A private throwaway nats-server a test may stop()/start()/kill(); always provisioned."""
    with NatsServer() as server:
        yield server


# --- S3 (tests/s3_server.py) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[S3Endpoint]:
    """A throwaway SeaweedFS S3 gateway shared by the session (started on first use)."""
    with SeaweedS3() as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def minio_s3() -> S3Endpoint:
    """The MinIO named by JANUS_TEST_MINIO_URL; the test is skipped when it is not set."""
    endpoint = minio_endpoint()
    if endpoint is None:
        pytest.skip(f"{ENV_MINIO_URL} is not set")
    return endpoint


# --- Graph (tests/graph_server.py) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def falkordb_url() -> Iterator[str]:
    """`falkor://host:port` of a throwaway FalkorDB shared by the session (started on first use)."""
    with FalkorDBServer() as server:
        yield server.url
