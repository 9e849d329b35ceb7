"""Crash and concurrency stories run as real processes on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from tests.e2e.procs import JanusProcess


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return Settings(home=tmp_path / "janus", database_url=url, poll_interval_seconds=0.05)


@pytest.fixture
def janus(settings: Settings) -> Iterator[Janus]:
    """The test's own handle on the store: it plays the operator and the agent."""
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def processes() -> Iterator[list[JanusProcess]]:
    started: list[JanusProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.proc is not None:
                proc.kill()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A JANUS_HOME of its own for CLI calls in this process, with no servers configured."""
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "janus"
