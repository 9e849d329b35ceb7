"""Every integration test here runs against both event stores: SQLite and real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from bootstrap.container import Janus
from bootstrap.settings import Settings


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
