"""The relay's loop: lead, connect, ensure the stream, follow the log, save the position.

It follows the log from its own tracked position (``relay:<stream>`` in the event store's
tracking table) and publishes each event with the contract in ``event_store.messages``.
Publishes are pipelined (at most ``relay_max_in_flight`` unacknowledged, see ``window``); the
saved position only moves to the end of the contiguous acknowledged prefix, every
``save_interval`` while busy and at once when idle.

Pipelining alone could reorder the stream: after a reconnect nats-py sends what it buffered,
while bytes written just before the disconnect may be lost, so event k+1 can land and k not.
So each publish also carries ``Nats-Expected-Last-Msg-Id`` (its predecessor's message id), and
the first one of an attempt ``Nats-Expected-Last-Sequence``: the server stores an event only
right after its predecessor, and the stream is always a gapless, ordered prefix of the log.

Any rejection, ack timeout or disconnect ends the attempt. The next one (and every start) reads
the stream's last message and carries on right after it, which the ordering guarantee makes
safe: after a crash between ack and save nothing is published twice, and a stream that lost
messages gets them again. What duplicates remain (publishes still in flight while re-syncing)
JetStream drops by ``Nats-Msg-Id`` within its duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
from eventsourcing.persistence import Notification
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine

from adapters.locks import LeaderLock
from event_store.application import JanusApplication
from event_store.heartbeat import StatusRow
from event_store.messages import H_LOG, H_MSG_ID, H_POSITION, StreamSpec, log_id
from event_store.nats import NATS_ERRORS, STORE_ERRORS, ensure_stream
from event_store.reader import NotificationReader
from event_store.relay.position import LeadershipLost, SavedPosition
from event_store.relay.status import (
    Outages,
    RelayStatus,
    describe,
    relay_status_table,
    tracking_name,
)
from event_store.relay.wakeup import listen, notify_channel, until_stopped, wait_any
from event_store.relay.window import PublishFailed, PublishWindow

log = logging.getLogger("janus.relay")

LOCK_ROLE = "relay"
# What nats-py's error callback reports when the connection itself is gone.
CONNECTION_ERRORS = (OSError, nats.errors.StaleConnectionError, nats.errors.ConnectionClosedError)


@dataclass(frozen=True)
class RelayConfig:
    """The settings the relay uses (bootstrap/ fills it from Settings)."""

    nats_url: str | None
    stream: StreamSpec
    node_id: str
    app_name: str
    # libpq conninfo for LISTEN/NOTIFY wake-ups; None (SQLite) polls only.
    listen_conninfo: str | None
    connect_timeout_seconds: int
    poll_interval_seconds: float
    max_in_flight: int


class RelayError(Exception):
    """The stream and the log disagree in a way the relay must not paper over."""


# Everything that can go wrong on the NATS side of an attempt while connected.
PUBLISH_ERRORS: tuple[type[Exception], ...] = (*NATS_ERRORS, PublishFailed, RelayError)


@dataclass(frozen=True)
class _Anchor:
    """What the stream ends with: publishing continues right after ``position``."""

    position: int
    last_sequence: int


class Relay:
    """Publishes one log to one stream; ``run`` it once, on one event loop.

    Blocking store calls (reads, saves, the lock) run in worker threads so that publishing,
    acks and the next read overlap.
    """

    def __init__(
        self,
        app: JanusApplication,
        reader: NotificationReader,
        lock: LeaderLock,
        settings: RelayConfig,
        status_engine: Engine,
        *,
        batch_size: int = 1_000,
        ack_timeout: float = 5.0,
        save_interval: float = 0.2,
        heartbeat_interval: float = 5.0,
        lock_check_interval: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        if not settings.nats_url:
            raise ValueError("the relay needs a NATS server: set JANUS_NATS_URL")
        self._app = app
        self._reader = reader
        self._lock = lock
        self._settings = settings
        self._spec: StreamSpec = settings.stream
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout
        self._heartbeat_interval = heartbeat_interval
        self._lock_check_interval = lock_check_interval
        self._max_backoff = max_backoff
        self.name = tracking_name(self._spec.name)
        self._log_id = log_id(settings.node_id, settings.app_name)
        self._position = SavedPosition(app, self.name, save_interval)
        self._status_row = StatusRow(status_engine, relay_status_table, self.name)
        self._window = PublishWindow(
            self._spec,
            settings.node_id,
            settings.app_name,
            reader,
            ack_timeout=ack_timeout,
            max_in_flight=settings.max_in_flight,
        )

        self.state = "starting"
        self._outages = Outages(self._status_changed)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._next_lock_check = 0.0
        self._backoff = 0.0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._nats_up = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._closing = False
        # Only the leader reports status: a standby must not overwrite the active relay's row.
        self._leading = False
        self._on_ready: Callable[[], None] | None = None

    # -- what others can see ------------------------------------------------------------------

    @property
    def acked(self) -> int:
        """The end of the contiguous acknowledged prefix: the position the next save stores."""
        return self._window.acked

    @property
    def saved(self) -> int:
        """The stored position: where a restart resumes from."""
        return self._position.saved

    @property
    def published(self) -> int:
        return self._window.published

    @property
    def duplicates(self) -> int:
        return self._window.duplicates

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def last_error(self) -> str | None:
        return self._outages.last_error

    def status(self) -> RelayStatus:
        """The live status; reads the head from the store (blocking)."""
        return RelayStatus(
            self.name,
            self.saved,
            self._reader.head(),
            self.state,
            self.connected,
            self.last_error,
            datetime.now(UTC),
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Relay until ``stop`` is set: lead, connect, ensure the stream, follow the log.

        ``on_ready`` is called once, when the relay first holds the lock, is connected and the
        stream is ensured.
        """
        self._stop = stop
        self._on_ready = on_ready
        background: list[asyncio.Task[None]] = []
        try:
            if not await self._lead():
                return
            self.state = "connecting"
            background = self._start_background()
            if not await until_stopped(self._connect(), self._stop):
                return
            while not stop.is_set():
                try:
                    await self._serve()
                except LeadershipLost as lost:
                    log.warning("relay: lost the relay lock (%s); queueing for it again", lost)
                    self._leading = False
                    await asyncio.to_thread(self._lock.release)
                    if not await self._lead():
                        return
        finally:
            await self._shutdown(background)

    async def _lead(self) -> bool:
        """Wait for the relay lock (one active relay per log); False when stopped first."""
        self.state = "standby"
        announced, delay = False, 0.2
        while not self._stop.is_set():
            try:
                if await asyncio.to_thread(self._lock.try_acquire):
                    self._outages.end("relay lock")
                    self._leading = True
                    return True
            except STORE_ERRORS as error:
                self._outages.begin("relay lock", error)
                delay = min(self._max_backoff, delay * 2)
            else:
                if not announced:
                    log.info("relay: another relay holds the lock for this log; waiting")
                    announced = True
                delay = 0.2
            await self._sleep(delay)
        return False

    def _start_background(self) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self._report_status(), name="relay-status")]
        channel = notify_channel(self._app)
        conninfo = self._settings.listen_conninfo
        if channel is not None and conninfo:
            listener = listen(
                conninfo,
                channel,
                self._wake,
                self._outages,
                connect_timeout=self._settings.connect_timeout_seconds,
                max_backoff=self._max_backoff,
            )
            tasks.append(asyncio.create_task(listener, name="relay-listen"))
        return tasks

    async def _serve(self) -> None:
        """Follow the log while leading; every failure short of a bug is retried with backoff."""
        while not self._stop.is_set():
            try:
                await self._ensure_stream()
                self._announce_ready()
                await self._follow()
            except STORE_ERRORS as error:
                self._outages.begin("event store", error)
            except PUBLISH_ERRORS as error:
                if self.connected:  # a lost connection is reported as a nats outage already
                    self._outages.begin("publishing", error)
            if not self._stop.is_set():
                await self._recover()

    def _announce_ready(self) -> None:
        self.state = "running"
        self._status_changed()
        if self._on_ready is not None:
            on_ready, self._on_ready = self._on_ready, None
            on_ready()

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        self.state = "stopped"
        if self._js is not None and await asyncio.to_thread(lambda: self._lock.held):
            await self._finish_in_flight()
        if self._nc is not None and not self._nc.is_closed:
            self._closing = True
            await self._nc.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if background and self._leading:
            await self._write_status_safely()
        self._leading = False
        await asyncio.to_thread(self._lock.release)

    async def _finish_in_flight(self) -> None:
        """On a clean stop: wait (bounded) for outstanding acks, then save what they confirmed.

        Whatever is still unacknowledged or unsaved afterwards is published again by the next
        run, so failing here loses nothing; it is logged, not raised.
        """
        try:
            await self._window.wait_for_room(1)
        except PublishFailed as error:
            log.info("relay: stopping with unacknowledged publishes: %s", error)
        try:
            await self._position.save_now(self.acked)
        except STORE_ERRORS as error:
            log.warning("relay: could not save position %s on stop: %s", self.acked, error)
        except LeadershipLost as lost:
            log.info("relay: another relay took over before the final save: %s", lost)

    # -- NATS -----------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect once; nats-py then reconnects on its own, forever."""
        url = self._settings.nats_url
        assert url is not None
        self._nc = await nats.connect(
            servers=url,
            name=f"janus-relay:{self._settings.node_id}:{self._spec.name}",
            connect_timeout=self._settings.connect_timeout_seconds,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = self._nc.jetstream(timeout=self._ack_timeout)
        await self._window.attach(self._nc)
        self._on_nats_up()

    async def _on_nats_error(self, error: Exception) -> None:
        if self._outages.active("nats"):
            log.debug("relay: nats still unavailable: %s", describe(error))
        elif isinstance(error, CONNECTION_ERRORS) or not self.connected:
            self._outages.begin("nats", error)
        else:
            log.warning("relay: nats client error: %s", describe(error))

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self._nats_up.clear()
        self._outages.begin("nats", "disconnected")
        self._window.fail(PublishFailed("disconnected from nats"))

    async def _on_reconnected(self) -> None:
        self._on_nats_up()

    def _on_nats_up(self) -> None:
        self._nats_up.set()
        self._outages.end("nats")
        self._wake.set()

    async def _ensure_stream(self) -> None:
        """Create the stream, or bring its configuration to the spec; never delete it."""
        await ensure_stream(self._jetstream(), self._spec, reconcile=True, who="relay")

    async def _anchor(self) -> _Anchor:
        """Where the stream ends, so the next publish is the event right after it."""
        js = self._jetstream()
        info = await js.stream_info(self._spec.name)
        last_sequence = info.state.last_seq
        if not info.state.messages:
            return _Anchor(self.acked, last_sequence)
        try:
            last = await js.get_last_msg(self._spec.name, f"{self._spec.subject_prefix}.>")
        except nats.js.errors.NotFoundError:
            return _Anchor(self.acked, last_sequence)
        return _Anchor(self._position_of(last.headers or {}), last_sequence)

    def _position_of(self, headers: dict[str, str]) -> int:
        """The log position of the stream's last message, if this log published it."""
        # Before Janus-Log, the message id itself was "<node>:<app>:<position>".
        log = headers.get(H_LOG) or headers.get(H_MSG_ID, "").rpartition(":")[0]
        position = headers.get(H_POSITION, "")
        if log != self._log_id or not position.isdigit():
            raise RelayError(
                f"stream {self._spec.name} ends with a message from another log ({log!r}); "
                f"each log needs its own stream"
            )
        return int(position)

    def _jetstream(self) -> JetStreamContext:
        assert self._js is not None, "connect first"
        return self._js

    # -- following the log ------------------------------------------------------------------------

    async def _follow(self) -> None:
        await self._resync()
        cursor = self.acked
        reading = self._read_after(cursor)
        try:
            while not self._stop.is_set():
                batch = await reading
                self._outages.end("event store")
                if batch:
                    await self._check_leadership()
                    cursor = batch[-1].id
                    reading = self._read_after(cursor)  # the next read overlaps the publishing
                    await self._window.publish(batch)
                    self._outages.end("publishing")
                    self._backoff = 0.0
                else:
                    await self._window.wait_for_room(1)
                    self._outages.end("publishing")
                    await self._position.save_now(
                        self.acked
                    )  # all acked: store it before a long sleep
                    await self._idle()
                    reading = self._read_after(cursor)
                await self._position.save(self.acked)
        finally:
            reading.cancel()

    def _read_after(self, position: int) -> asyncio.Task[list[Notification]]:
        read = asyncio.to_thread(self._reader.read_after, position, self._batch_size)
        return asyncio.ensure_future(read)

    async def _resync(self) -> None:
        """Start a new attempt after whatever the stream already holds."""
        self._window.new_attempt()
        self._window.acked = max(self.acked, await self._position.reload())
        anchor = await self._anchor()
        head = await asyncio.to_thread(self._reader.head)
        if anchor.position > head:
            raise RelayError(
                f"stream {self._spec.name} holds position {anchor.position} but the log ends at "
                f"{head}: was the event store restored from an older backup?"
            )
        if anchor.position < self.acked:
            log.warning(
                "relay: stream %s ends at position %s, before the acknowledged %s; "
                "publishing the missing events again",
                self._spec.name,
                anchor.position,
                self.acked,
            )
        self._window.continue_after(anchor.position, anchor.last_sequence)

    async def _idle(self) -> None:
        """Nothing new: sleep until a NOTIFY, the poll interval (a NOTIFY can be lost) or stop."""
        await wait_any(self._wake, self._stop, timeout=self._settings.poll_interval_seconds)
        self._wake.clear()

    # -- leadership, recovery -----------------------------------------------

    async def _check_leadership(self) -> None:
        now = time.monotonic()
        if now < self._next_lock_check:
            return
        self._next_lock_check = now + self._lock_check_interval
        if not await asyncio.to_thread(lambda: self._lock.held):
            raise LeadershipLost("the lock's database session ended")

    async def _recover(self) -> None:
        """Back off (longer each time in a row), and wait for NATS if it is down."""
        self._backoff = min(self._max_backoff, max(0.1, self._backoff * 2))
        await self._sleep(self._backoff * random.uniform(0.5, 1.0))
        while not self._nats_up.is_set() and not self._stop.is_set():
            await wait_any(self._nats_up, self._stop)
        self._next_lock_check = 0.0
        await self._check_leadership()

    async def _sleep(self, seconds: float) -> None:
        await wait_any(self._stop, timeout=seconds)

    # -- reporting status -------------------------------------------------------------------------

    def _status_changed(self) -> None:
        self._status_dirty.set()

    async def _report_status(self) -> None:
        """Write state, connection and error on each change and as a heartbeat."""
        while True:
            if await self._write_status_safely():
                await wait_any(self._status_dirty, timeout=self._heartbeat_interval)
            else:
                await asyncio.sleep(self._heartbeat_interval)  # the store is down: no hurry
            self._status_dirty.clear()

    async def _write_status_safely(self) -> bool:
        if not self._leading:
            return True
        try:
            await asyncio.to_thread(self._write_status)
        except STORE_ERRORS as error:
            self._outages.begin("status table", error)
            return False
        self._outages.end("status table")
        return True

    def _write_status(self) -> None:
        self._status_row.write(state=self.state, connected=self.connected, error=self.last_error)
