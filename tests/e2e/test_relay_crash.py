"""The relay SIGKILLed at random moments while events keep arriving: the stream stays the log.

A real ``python -m cli.relay`` process is started and killed (no cleanup, no final save)
over and over, sometimes while it is still starting, mostly while it is following the log, and
a writer appends goals the whole time. Afterwards one relay runs to the head, and the stream must
hold every event exactly once, in log order.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import nats
import nats.js.errors
import pytest

from bootstrap.container import Janus
from bootstrap.relay import relay_status as read_relay_status
from bootstrap.settings import Settings
from tests.e2e.procs import janus_env
from tests.support.relay import (
    Writer,
    assert_stream_is_the_log,
    delete_streams,
    relay_settings,
    wait_caught_up,
)

KILLS = 20
EVENTS = 2_000
# The share of kills aimed at start-up (lock, connect, stream, re-sync) rather than following.
STARTUP_KILLS = 0.25


class RelayProcess:
    """``python -m cli.relay`` in its own process group, so a kill takes all of it."""

    def __init__(self, settings: Settings) -> None:
        self.env = janus_env(settings)
        self.env.update(
            {
                "JANUS_NATS_URL": str(settings.nats_url),
                "JANUS_STREAM_NAME": settings.stream_name,
                "JANUS_SUBJECT_PREFIX": settings.subject_prefix,
                "JANUS_STREAM_MAX_BYTES": str(settings.stream_max_bytes),
                "JANUS_RELAY_MAX_IN_FLIGHT": str(settings.relay_max_in_flight),
            }
        )
        self.log_path = Path(settings.home) / "relay.log"
        self.proc: subprocess.Popen[str] | None = None
        self.ready = threading.Event()

    def start(self) -> RelayProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.relay"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        threading.Thread(target=self._watch, args=(self.proc.stdout,), daemon=True).start()
        return self

    def _watch(self, stdout: IO[str]) -> None:
        for line in stdout:
            if line.startswith("relay ready"):
                self.ready.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise TimeoutError(f"relay not ready in {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no flush, no final save, no lock release but the operating system's."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0, self.log()[-3000:]
        except subprocess.TimeoutExpired:
            self.kill()
            raise


def pause(seconds: float) -> None:
    """Choose the kill moment: the random wait is the test's input, not a wait for work."""
    threading.Event().wait(seconds)


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, nats_url: str) -> Iterator[Settings]:
    settings = relay_settings(tmp_path / "janus", nats_url, pg_url)
    yield settings
    asyncio.run(delete_streams({(settings.nats_url, settings.stream_name)}))


@pytest.fixture
def janus(settings: Settings) -> Iterator[Janus]:
    built = Janus.build(settings)
    yield built
    built.close()


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.kill()


def test_random_sigkills_never_lose_double_or_reorder_an_event(
    settings: Settings, janus: Janus, relays: list[RelayProcess]
) -> None:
    seed = int(os.environ.get("JANUS_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    began = time.monotonic()
    kills_after_publishing = 0

    # 1. Kill a relay twenty times while a writer appends 2,000 goals.
    with Writer(janus, total=EVENTS, burst=25, pause=0.3) as writer:
        for _ in range(KILLS):
            relay = RelayProcess(settings).start()
            relays.append(relay)
            if rng.random() < STARTUP_KILLS:
                pause(rng.uniform(0.05, 1.2))  # start-up takes about a second here
            else:
                relay.wait_ready()
                pause(rng.uniform(0.0, 0.7))
            relay.kill()
            kills_after_publishing += published_beyond_saved(settings, janus)
        writer.finish()

    # 2. One relay runs to the head and stops cleanly.
    final = RelayProcess(settings).start()
    relays.append(final)
    final.wait_ready()
    wait_caught_up(janus, timeout=60)
    final.stop()

    # 3. The stream is the log: every event once, in order.
    published = assert_stream_is_the_log(janus)
    assert len(published) == EVENTS == janus.app.head()
    assert read_relay_status(janus).lag == 0
    print(
        f"seed={seed} kills={KILLS} with published-but-unsaved events={kills_after_publishing} "
        f"in {time.monotonic() - began:.1f}s"
    )


def published_beyond_saved(settings: Settings, janus: Janus) -> int:
    """1 when the killed relay had published past its saved position (it crashed mid-flight)."""
    saved = read_relay_status(janus).position
    return int(asyncio.run(last_published_position(settings)) > saved)


async def last_published_position(settings: Settings) -> int:
    assert settings.nats_url is not None
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(settings.stream_name)
        except nats.js.errors.NotFoundError:
            return 0  # killed before it created the stream
        if not info.state.messages:
            return 0
        last = await js.get_msg(settings.stream_name, info.state.last_seq)
        return int((last.headers or {})["Janus-Position"])
    finally:
        await nc.close()
