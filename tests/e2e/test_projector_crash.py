"""Story: a JetStream projector is SIGKILLed at random moments while events keep arriving.

Each round starts a real ``python -m cli.project relational`` and kills it: sometimes
during start-up, mostly once its view has passed a random position among freshly published
events, polled at a random pace so the kill lands anywhere in the batch after it (between a
commit and its ack above all): no cleanup, no flush, no ack sent after the last commit. At the
end one more projector runs to the head and is stopped cleanly; its view must equal a rebuild
from the log, row by row.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from nats.js.errors import NotFoundError

from bootstrap.container import Janus
from bootstrap.settings import Settings
from projections.jetstream import consumer_name
from tests.e2e.procs import janus_env
from tests.servers import wait_until
from tests.support.jetstream import (
    Relay,
    delete_stream,
    jetstream_settings,
    rebuilt_rows,
    view_rows,
    workload,
)

KILLS = 20
EVENTS = 2_000
# workload() writes two events per goal on average (a third of the goals get three more).
GOALS = EVENTS // 2
# Each round, half its events wait in the stream before the projector starts and half arrive
# while it works; small batches put many commit-then-ack windows in the kill's way.
ROUND_GOALS = GOALS // KILLS // 2
BATCH = 20
# Sometimes kill during start-up (at once, or as it says it is ready: finding the start,
# re-creating the consumer), mostly mid-work.
EARLY_KILLS = 0.2
# How often the view's position is polled before the kill: the slower, the further past it.
MAX_POLL_SECONDS = 0.05
READY_LINE = "projector ready"
COMMAND = [sys.executable, "-m", "cli.project", "relational"]


class Projector:
    """``python -m cli.project relational`` in its own process group."""

    def __init__(self, settings: Settings) -> None:
        self.env = janus_env(settings) | {
            "JANUS_NATS_URL": str(settings.nats_url),
            "JANUS_STREAM_NAME": settings.stream_name,
            "JANUS_SUBJECT_PREFIX": settings.subject_prefix,
            "JANUS_STREAM_MAX_BYTES": str(settings.stream_max_bytes),
        }
        self.log_path = Path(settings.home) / "projector.log"
        self.ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Projector:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.project",
                    "relational",
                    "--batch-size",
                    str(BATCH),
                ],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        threading.Thread(target=self._watch, args=(self.proc.stdout,), daemon=True).start()
        return self

    def _watch(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith(READY_LINE):
                self.ready.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        alive = self.proc
        wait_until(
            lambda: self.ready.is_set() or alive.poll() is not None, timeout, message="ready"
        )
        assert self.ready.is_set(), f"projector exited {alive.returncode}:\n{self.log()}"

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class Publisher:
    """Writes events through the command service and publishes them as the relay would,
    in its own thread, so they arrive while a projector works and dies."""

    def __init__(self, janus: Janus, relay: Relay) -> None:
        self.janus = janus
        self.relay = relay
        self.rounds: queue.Queue[int | None] = queue.Queue()
        self.failures: list[BaseException] = []
        self.released = 0
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.thread.start()

    def release(self, goals: int) -> None:
        self.released += goals
        self.rounds.put(goals)

    def finish(self) -> None:
        self.rounds.put(None)
        self.thread.join(60)
        assert not self.thread.is_alive() and not self.failures, self.failures

    def _run(self) -> None:
        try:
            while (goals := self.rounds.get()) is not None:
                # Small steps, so messages keep arriving during the whole round.
                for _ in range(0, goals, 10):
                    workload(self.janus, 10)
                    self.relay.publish()
        except BaseException as error:
            self.failures.append(error)
            raise


@pytest.fixture
def projectors() -> Iterator[list[Projector]]:
    """Every projector a test started dies with the test, whatever the test's outcome."""
    started: list[Projector] = []
    try:
        yield started
    finally:
        for projector in started:
            projector.kill()


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, nats_url: str) -> Iterator[Settings]:
    settings = jetstream_settings(tmp_path / "janus", pg_url, nats_url)
    try:
        yield settings
    finally:
        delete_stream(settings)


def test_projector_killed_at_random_moments_ends_equal_to_a_rebuild(
    settings: Settings, tmp_path: Path, projectors: list[Projector]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    janus = Janus.build(settings)
    relay = Relay(janus)
    publisher = Publisher(janus, relay)
    consumer = consumer_name("relational", janus.relational.projection.version)
    positions, unacked = [], 0
    try:
        for _ in range(KILLS):
            publisher.release(ROUND_GOALS)
            projector = Projector(settings).start()
            projectors.append(projector)
            if rng.random() < EARLY_KILLS:
                if rng.random() < 0.5:
                    projector.wait_ready()
            else:
                projector.wait_ready()
                # What is released now lies above the position read before it, one event or
                # more per goal: so the view will pass the target.
                target = janus.relational.position + rng.randint(1, ROUND_GOALS)
                publisher.release(ROUND_GOALS)

                def passed(target: int = target) -> bool:
                    return janus.relational.position >= target

                pace = rng.uniform(0.001, MAX_POLL_SECONDS)
                wait_until(passed, 30, interval=pace, message=f"the view at position {target}")
            projector.kill()
            positions.append(janus.relational.position)
            unacked += unacked_deliveries(relay, consumer)
        publisher.release(max(0, GOALS - publisher.released))
        publisher.finish()
        assert janus.app.head() >= EVENTS

        final = Projector(settings).start()
        projectors.append(final)
        final.wait_ready()
        head = janus.app.head()
        wait_until(lambda: janus.relational.position >= head, 30, message=f"position {head}")
        assert final.terminate() == 0, final.log()

        status = janus.relational.status()
        assert (status.position, status.state) == (head, "running"), f"seed {seed}"
        assert view_rows(janus.views_engine) == rebuilt_rows(janus, tmp_path), f"seed {seed}"
        # The kills landed while there was work: the view moved between many of them, and
        # some left deliveries un-acked (killed between a fetch and its ack).
        assert len(set(positions)) > KILLS // 4, (seed, positions)
        assert unacked > 0, (seed, positions, unacked)
    finally:
        janus.close()


def unacked_deliveries(relay: Relay, consumer: str) -> bool:
    """Whether the kill left deliveries un-acked; False when it came before the projector
    had even created its consumer."""
    try:
        return relay.consumer_info(consumer).num_ack_pending > 0
    except NotFoundError:
        return False


def test_an_unknown_projection_name_is_refused_with_the_known_ones(settings: Settings) -> None:
    ran = subprocess.run(
        [*COMMAND[:-1], "no-such-view"],
        env=Projector(settings).env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    assert "no projection named 'no-such-view'" in ran.stderr
    assert "relational" in ran.stderr and READY_LINE not in ran.stdout
