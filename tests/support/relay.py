"""Relay test settings, a running relay, and checks that the stream is exactly the log."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from bootstrap.container import Janus
from bootstrap.relay import build_relay
from bootstrap.relay import relay_status as read_relay_status
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from event_store import messages as wire
from event_store.relay.thread import RelayThread
from tests.servers import unique_name, wait_until

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


OPERATOR = Invocation(Actor(ActorKind.USER, "alice"), trace_context={"traceparent": TRACEPARENT})


# Short enough that failure paths (ack timeouts, lock checks) show up within a test's budget.
TEST_OPTIONS: dict[str, Any] = {
    "ack_timeout": 2.0,
    "heartbeat_interval": 0.5,
    "lock_check_interval": 0.5,
    "max_backoff": 1.0,
}


def relay_settings(home: Path, nats_url: str, database_url: str | None) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        nats_url=nats_url,
        stream_name=unique_name("relay"),
        subject_prefix=f"{unique_name('t')}.events",
        poll_interval_seconds=0.2,
        relay_max_in_flight=64,
        # JetStream reserves max_bytes per stream up front; many test streams at the default
        # would exhaust a shared test server.
        stream_max_bytes=16 * 1024**2,
    )


JanusFactory = Callable[[Settings], Janus]


async def delete_streams(streams: set[tuple[str | None, str]]) -> None:
    """Keep the shared NATS server's store small; the names are unique anyway."""
    for url, name in streams:
        assert url is not None
        with contextlib.suppress(nats.errors.NoServersError, OSError):  # a private server, gone
            nc = await nats.connect(url, allow_reconnect=False)
            with contextlib.suppress(nats.js.errors.NotFoundError):  # never created
                await nc.jetstream().delete_stream(name)
            await nc.close()


@contextmanager
def running_relay(janus: Janus, **options: Any) -> Iterator[RelayThread]:
    relay = RelayThread(build_relay(janus, **{**TEST_OPTIONS, **options})).start()
    try:
        relay.wait_ready()
        yield relay
    finally:
        relay.stop()


def submit_goals(janus: Janus, count: int, prefix: str = "goal") -> int:
    position = 0
    for i in range(count):
        goal = m.SubmitGoal(text=f"{prefix} {i}")
        position = janus.commands.submit_goal(goal, OPERATOR).position
    return position


def caught_up(janus: Janus) -> bool:
    return read_relay_status(janus).position >= janus.app.head()


def wait_caught_up(janus: Janus, timeout: float = 30.0) -> None:
    wait_until(lambda: caught_up(janus), timeout, message="the relay to reach the head")


@dataclass(frozen=True)
class Published:
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def position(self) -> int:
        return int(self.headers[wire.H_POSITION])


def stream_contents(settings: Settings) -> list[Published]:
    """Every message in the stream, in stream order."""
    return asyncio.run(read_stream(settings))


async def read_stream(settings: Settings) -> list[Published]:
    assert settings.nats_url is not None
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(settings.stream_name)).state.messages
        # No acks: an explicit-ack consumer stops delivering at max_ack_pending (1,000).
        config = ConsumerConfig(ack_policy=AckPolicy.NONE)
        subject = f"{settings.subject_prefix}.>"
        sub = await js.pull_subscribe(subject, stream=settings.stream_name, config=config)
        found: list[Msg] = []
        while len(found) < total:
            found += await sub.fetch(batch=min(500, total - len(found)), timeout=10)
        await sub.unsubscribe()
        return [Published(msg.subject, dict(msg.headers or {}), msg.data) for msg in found]
    finally:
        await nc.close()


def log_positions(janus: Janus) -> list[int]:
    return [n.id for n in janus.reader.read_after(0, 1_000_000)]


def assert_stream_is_the_log(janus: Janus) -> list[Published]:
    """Each event exactly once, in log order: the stream is a copy of the log."""
    published = stream_contents(janus.settings)
    assert [p.position for p in published] == log_positions(janus)
    log = wire.log_id(janus.settings.node_id, janus.settings.app_name)
    assert {p.headers[wire.H_LOG] for p in published} <= {log}
    assert [p.headers[wire.H_MSG_ID] for p in published] == [
        wire.message_id(event_id) for event_id in log_event_ids(janus)
    ]
    return published


def log_event_ids(janus: Janus) -> list[UUID]:
    """Every event's own id (its meta event_id), in log order."""
    return [logged.event.meta.event_id for logged in janus.reader.iterate()]  # type: ignore[attr-defined]


class Writer:
    """Appends goals from another thread, a few at a time, until it has written ``total``."""

    def __init__(self, janus: Janus, total: int, burst: int = 10, pause: float = 0.02) -> None:
        self.janus, self.total, self.burst, self.pause = janus, total, burst, pause
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        try:
            while self.written < self.total and not self._stop.is_set():
                count = min(self.burst, self.total - self.written)
                submit_goals(self.janus, count, "written")
                self.written += count
                self._stop.wait(self.pause)  # pacing, so the writes span the whole scenario
        except BaseException as error:  # noqa: BLE001 - re-raised by the test via finish()
            self.error = error

    def finish(self, timeout: float = 60.0) -> None:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.written == self.total
