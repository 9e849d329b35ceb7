"""Every integration test here runs against both event stores: SQLite and real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from bootstrap.container import Janus
from bootstrap.settings import Settings
from tests.support.relay import JanusFactory, delete_streams, relay_settings


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(home=tmp_path / "janus", database_url=None, poll_interval_seconds=0.05)
    pg_url: str = request.getfixturevalue("pg_url")
    return Settings(home=tmp_path / "janus", database_url=pg_url, poll_interval_seconds=0.05)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def janus(settings: Settings, clock: ManualClock) -> Iterator[Janus]:
    built = Janus.build(settings, clock=clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Janus]:
    """An embedded edge node "n1" beside the cloud (``janus``): its log reaches the cloud through
    ``tests.support.edge.hub_messages`` and ``direct_ingester``, no servers needed."""
    built = Janus.build(Settings(home=tmp_path / "edge", node_id="n1"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def janus_on() -> Iterator[JanusFactory]:
    """Builds a Janus per settings and closes them all at the end of the test."""
    built: list[Janus] = []

    def build(settings: Settings) -> Janus:
        built.append(Janus.build(settings))
        return built[-1]

    yield build
    for janus in built:
        janus.close()
    asyncio.run(delete_streams({(j.settings.nats_url, j.settings.stream_name) for j in built}))


@pytest.fixture
def pg_janus(tmp_path: Path, pg_url: str, nats_url: str, janus_on: JanusFactory) -> Janus:
    return janus_on(relay_settings(tmp_path / "janus", nats_url, pg_url))
