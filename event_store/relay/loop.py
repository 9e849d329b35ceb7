"""The relay: the only writer of the JetStream stream, fed from the notification log in order.

It follows the log from its own tracked position (``relay:<stream>`` in the event store's
tracking table) and publishes each event with the contract in ``event_store.messages``.
Publishes are pipelined (at most ``relay_max_in_flight`` unacknowledged); the saved position only
moves to the end of the contiguous acknowledged prefix, every ``save_interval`` while busy and at
once when idle.

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

Acks come to our own reply inbox rather than ``js.publish_async``: in nats-py 2.16 an error reply
leaves the ``publish_async`` future pending forever (nats-io/nats.py#985) and its futures have no
timeout; the inbox token is the event's position, which is also cheaper than a future each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
import psycopg
from eventsourcing.persistence import IntegrityError, Notification, PersistenceError, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg import sql
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapters.locks import LeaderLock
from event_store.application import JanusApplication
from event_store.messages import H_MSG_ID, H_POSITION, StreamSpec, headers_for, subject_for
from event_store.reader import NotificationReader

log = logging.getLogger("janus.relay")

LOCK_ROLE = "relay"
H_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
H_EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
NO_RESPONDERS = "503"
# A relay that has not reported for this many heartbeats is presumed dead (e.g. SIGKILLed).
STALE_HEARTBEATS = 3

STORE_ERRORS: tuple[type[Exception], ...] = (PersistenceError, psycopg.Error, SQLAlchemyError)
NATS_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, OSError, asyncio.TimeoutError)
CONNECTION_ERRORS = (OSError, nats.errors.StaleConnectionError, nats.errors.ConnectionClosedError)

status_metadata = MetaData()

relay_status_table = Table(
    "relay_status",
    status_metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# Where the correlation id and traceparent sit in a stored event: inside the janus_meta object
# (EventMetaAsDict), written by eventsourcing's compact JSON encoder. Any other encoding, or a
# value with an escape in it, is not recognised and takes the full JSON parse instead.
_META = b'"meta":{"_type_":"janus_meta","_data_":{'
_CORRELATION_ID = b'"correlation_id":"'
_TRACE_CONTEXT = b'"trace_context":{'
_TRACEPARENT = b'"traceparent":"'


def scan_provenance(state: bytes) -> tuple[str, str] | None:
    """(correlation id, traceparent) found by plain byte search; None if not recognised.

    A JSON parse of a 650-byte event is a tenth of the relay's time; this is a third of that.
    A key pattern such as ``"correlation_id":"`` cannot occur inside a JSON string (its quotes
    would be escaped), and the meta's fields are written in a fixed order, so the first match
    after the meta's start is the meta's own.
    """
    at = state.find(_META)
    if at < 0:
        return None
    correlation_id, at = _string_after(state, _CORRELATION_ID, at)
    trace_at = state.find(_TRACE_CONTEXT, at)
    trace_end = state.find(b"}", trace_at)
    if correlation_id is None or trace_at < 0 or trace_end < 0:
        return None
    if state.find(_TRACEPARENT, trace_at, trace_end) < 0:
        # Only an empty trace context is known to hold no traceparent: a "}" inside a
        # tracestate value would end the search early.
        empty = trace_end == trace_at + len(_TRACE_CONTEXT)
        return (correlation_id, "") if empty else None
    traceparent, _ = _string_after(state, _TRACEPARENT, trace_at)
    return None if traceparent is None else (correlation_id, traceparent)


def _string_after(state: bytes, key: bytes, at: int) -> tuple[str | None, int]:
    start = state.find(key, at)
    end = state.find(b'"', start + len(key)) if start >= 0 else -1
    if end < 0 or state.find(b"\\", start, end) >= 0:
        return None, at
    return state[start + len(key) : end].decode(), end


def tracking_name(stream_name: str) -> str:
    return f"relay:{stream_name}"


# -- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayStatus:
    """Where the relay is: ``position`` is the saved one, the point a restart resumes from."""

    name: str
    position: int
    head: int
    state: str
    connected: bool
    last_error: str | None
    updated_at: datetime | None = None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


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


def read_relay_status(
    app: JanusApplication,
    reader: NotificationReader,
    status_engine: Engine,
    stream_name: str,
    heartbeat_seconds: float = 5.0,
) -> RelayStatus:
    """The relay's status from the store, as any process (``janus projections status``) sees it.

    ``state`` and ``connected`` are as the relay last reported them; a report older than a few
    heartbeats means no relay is running (it was killed), so the status says ``stopped``.
    """
    name = tracking_name(stream_name)
    position = app.tracked_position(name)
    head = reader.head()
    row = None
    if inspect(status_engine).has_table(relay_status_table.name):
        with status_engine.connect() as conn:
            query = select(relay_status_table).where(relay_status_table.c.name == name)
            row = conn.execute(query).first()
    if row is None:
        return RelayStatus(name, position, head, "never-run", False, None)
    updated_at = _aware(row.updated_at)
    fresh = datetime.now(UTC) - updated_at
    alive = fresh.total_seconds() < STALE_HEARTBEATS * heartbeat_seconds
    state = row.state if alive else "stopped"
    connected = bool(row.connected) and alive
    return RelayStatus(name, position, head, state, connected, row.error, updated_at)


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Outages:
    """One log line when something becomes unavailable and one when it is back, not per retry."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._since: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._on_change = on_change

    @property
    def last_error(self) -> str | None:
        return next(reversed(self._errors.values()), None)

    def begin(self, what: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else _describe(error)
        if self._errors.get(what) == f"{what}: {text}":
            return
        self._errors[what] = f"{what}: {text}"
        if what not in self._since:
            self._since[what] = time.monotonic()
            log.warning("relay: %s unavailable: %s", what, text)
        self._on_change()

    def end(self, what: str) -> None:
        since = self._since.pop(what, None)
        if since is None:
            return
        self._errors.pop(what, None)
        log.info("relay: %s back after %.1fs", what, time.monotonic() - since)
        self._on_change()

    def active(self, what: str) -> bool:
        return what in self._since


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# -- failures ---------------------------------------------------------------------------------


class RelayError(Exception):
    """The stream and the log disagree in a way the relay must not paper over."""


class PublishFailed(Exception):
    """This attempt's pipeline broke (rejection, timeout, disconnect); re-sync and go on."""


class LeadershipLost(Exception):
    """Another relay may now be active: stop publishing and queue for the lock again."""


# Everything that can go wrong on the NATS side of an attempt while connected.
PUBLISH_ERRORS: tuple[type[Exception], ...] = (*NATS_ERRORS, PublishFailed, RelayError)


@dataclass(frozen=True)
class _Anchor:
    """What the stream ends with: publishing continues right after ``position``."""

    position: int
    last_sequence: int


# -- the relay --------------------------------------------------------------------------------


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
        self._status_engine = status_engine
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout
        self._save_interval = save_interval
        self._heartbeat_interval = heartbeat_interval
        self._lock_check_interval = lock_check_interval
        self._max_backoff = max_backoff
        self._max_in_flight = settings.max_in_flight
        self.name = tracking_name(self._spec.name)
        self._msg_id_prefix = f"{settings.node_id}:{settings.app_name}:"
        self._subjects: dict[str, str] = {}

        self.state = "starting"
        self.saved = 0
        self.acked = 0
        self.published = 0
        self.duplicates = 0
        self._outages = _Outages(self._status_changed)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._inbox = ""
        # Per attempt: the window of unacknowledged positions and the replies that came back.
        self._epoch = 0
        self._window: deque[tuple[int, float]] = deque()
        self._replies: dict[int, bool] = {}
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiting_for = -1
        self._previous_msg_id: str | None = None
        self._expected_sequence: int | None = None
        self._saving: asyncio.Task[None] | None = None
        self._last_save = 0.0
        self._next_lock_check = 0.0
        self._backoff = 0.0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._nats_up = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._status_table_ready = False
        self._closing = False
        # Only the leader reports status: a standby must not overwrite the active relay's row.
        self._leading = False
        self._on_ready: Callable[[], None] | None = None

    # -- what others can see ------------------------------------------------------------------

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
            if not await self._until_stopped(self._connect()):
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
        channel = self._notify_channel()
        conninfo = self._settings.listen_conninfo
        if channel is not None and conninfo:
            listener = self._listen(conninfo, channel)
            tasks.append(asyncio.create_task(listener, name="relay-listen"))
        return tasks

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` unless stop comes first (then cancel it); True when it finished."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        task.result()
        return True

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
            await self._wait_for_room(1)
        except PublishFailed as error:
            log.info("relay: stopping with unacknowledged publishes: %s", error)
        try:
            await self._save_now()
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
        self._inbox = f"{self._nc.new_inbox()}."
        await self._nc.subscribe(f"{self._inbox}*.*", cb=self._on_reply)
        self._on_nats_up()

    async def _on_nats_error(self, error: Exception) -> None:
        if self._outages.active("nats"):
            log.debug("relay: nats still unavailable: %s", _describe(error))
        elif isinstance(error, CONNECTION_ERRORS) or not self.connected:
            self._outages.begin("nats", error)
        else:
            log.warning("relay: nats client error: %s", _describe(error))

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self._nats_up.clear()
        self._outages.begin("nats", "disconnected")
        self._fail(PublishFailed("disconnected from nats"))

    async def _on_reconnected(self) -> None:
        self._on_nats_up()

    def _on_nats_up(self) -> None:
        self._nats_up.set()
        self._outages.end("nats")
        self._wake.set()

    async def _ensure_stream(self) -> None:
        """Create the stream, or bring its configuration to the spec; never delete it."""
        js = self._jetstream()
        desired = self._spec.config()
        try:
            info = await js.stream_info(self._spec.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(desired)
            log.info("relay: created stream %s", self._spec.name)
            return
        current = info.config.as_dict()
        changed = {k for k, v in desired.as_dict().items() if current.get(k) != v}
        if changed:
            await js.update_stream(desired)
            log.info("relay: updated stream %s (%s)", self._spec.name, ", ".join(sorted(changed)))

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
        msg_id = headers.get(H_MSG_ID, "")
        position = headers.get(H_POSITION, "")
        if not msg_id.startswith(self._msg_id_prefix) or not position.isdigit():
            raise RelayError(
                f"stream {self._spec.name} ends with a message from another log ({msg_id!r}); "
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
                    await self._publish(batch)
                    self._outages.end("publishing")
                    self._backoff = 0.0
                else:
                    await self._wait_for_room(1)
                    self._outages.end("publishing")
                    await self._save_now()  # all acked: store it before a long sleep
                    await self._idle()
                    reading = self._read_after(cursor)
                await self._save()
        finally:
            reading.cancel()

    def _read_after(self, position: int) -> asyncio.Task[list[Notification]]:
        read = asyncio.to_thread(self._reader.read_after, position, self._batch_size)
        return asyncio.ensure_future(read)

    async def _resync(self) -> None:
        """Start a new attempt after whatever the stream already holds."""
        self._epoch += 1
        self._window.clear()
        self._replies.clear()
        self._failure = None
        self.saved = max(self.saved, await asyncio.to_thread(self._app.tracked_position, self.name))
        self.acked = max(self.acked, self.saved)
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
        self.acked = anchor.position
        self._previous_msg_id = None
        self._expected_sequence = anchor.last_sequence

    async def _idle(self) -> None:
        """Nothing new: sleep until a NOTIFY, the poll interval (a NOTIFY can be lost) or stop."""
        await self._wait_any(self._wake, self._stop, timeout=self._settings.poll_interval_seconds)
        self._wake.clear()

    # -- publishing -----------------------------------------------------------------------------

    async def _publish(self, batch: list[Notification]) -> None:
        nc = self._nc
        assert nc is not None
        if not nc.is_connected:
            raise PublishFailed("not connected to nats")
        publish = nc.publish
        window = self._window
        limit = self._max_in_flight
        reply_prefix = f"{self._inbox}{self._epoch}."
        for notification in batch:
            if len(window) >= limit:
                await self._wait_for_room(limit)
            position = notification.id
            await publish(
                self._subject(notification.topic),
                notification.state,
                reply=f"{reply_prefix}{position}",
                headers=self._headers(notification),
            )
            window.append((position, time.monotonic()))
        self.published += len(batch)
        self._pop_acked()

    def _subject(self, topic: str) -> str:
        subject = self._subjects.get(topic)
        if subject is None:
            subject = self._subjects[topic] = subject_for(self._spec.subject_prefix, topic)
        return subject

    def _headers(self, notification: Notification) -> dict[str, str]:
        correlation_id, traceparent = self._provenance(notification)
        headers = headers_for(
            notification,
            self._settings.node_id,
            self._settings.app_name,
            correlation_id,
            traceparent,
        )
        if self._previous_msg_id is not None:
            headers[H_EXPECTED_LAST_MSG_ID] = self._previous_msg_id
        elif self._expected_sequence is not None:
            headers[H_EXPECTED_LAST_SEQUENCE] = str(self._expected_sequence)
        self._previous_msg_id = headers[H_MSG_ID]
        return headers

    def _provenance(self, notification: Notification) -> tuple[str, str]:
        """Correlation id and traceparent for the headers, as cheaply as the stored bytes allow."""
        found = scan_provenance(notification.state)
        if found is not None:
            return found
        try:
            meta = json.loads(notification.state)["meta"]["_data_"]
            trace = meta.get("trace_context") or {}
            return str(meta.get("correlation_id") or ""), str(trace.get("traceparent") or "")
        except (ValueError, KeyError, TypeError):
            # Not plain JSON (a cipher or compressor is configured): take the mapper's road.
            event_meta = getattr(self._reader.decode(notification).event, "meta", None)
            if event_meta is None:
                return "", ""
            return event_meta.correlation_id, event_meta.trace_context.get("traceparent", "")

    async def _on_reply(self, msg: Msg) -> None:
        epoch, _, token = msg.subject[len(self._inbox) :].partition(".")
        if epoch != str(self._epoch):
            return  # a late answer to an abandoned attempt
        position = int(token)
        data = msg.data
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            self._fail(PublishFailed(f"no stream answers on {self._spec.subject_prefix}.>"))
            return
        # A PubAck is {"stream":..,"seq":..[,"duplicate":true]}; parse JSON only for errors.
        if b'"error"' in data:
            error = json.loads(data)["error"]
            description = error.get("description", error)
            self._fail(PublishFailed(f"position {position} rejected: {description}"))
            return
        self._replies[position] = b'"duplicate":true' in data
        if position == self._waiting_for:
            self._wake_waiter()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pop_acked(self) -> None:
        """Advance over the contiguous acknowledged prefix of the window, in log order."""
        window, replies = self._window, self._replies
        acked = self.acked
        while window and window[0][0] in replies:
            acked = window.popleft()[0]
            if replies.pop(acked):
                self.duplicates += 1
        self.acked = acked
        if self._failure is not None:
            raise PublishFailed(str(self._failure)) from self._failure

    async def _wait_for_room(self, limit: int) -> None:
        """Until fewer than ``limit`` publishes are unacknowledged; each gets ``ack_timeout``."""
        loop = asyncio.get_running_loop()
        while True:
            self._pop_acked()
            if len(self._window) < limit:
                return
            position, sent_at = self._window[0]
            remaining = sent_at + self._ack_timeout - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no ack for position {position} in {self._ack_timeout}s")
            self._waiting_for = position
            self._waiter = loop.create_future()
            timer = loop.call_later(remaining, self._wake_waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
                self._waiting_for = -1

    # -- the stored position, leadership, recovery -----------------------------------------------

    async def _save(self) -> None:
        """Store the acked position in the background, at most every ``save_interval``.

        One save at a time; a failed save raises here, on the next call.
        """
        if self._saving is not None:
            if not self._saving.done():
                return
            saving, self._saving = self._saving, None
            saving.result()
        due = time.monotonic() - self._last_save >= self._save_interval
        if self.acked > self.saved and due:
            self._last_save = time.monotonic()
            self._saving = asyncio.create_task(self._store_position(self.acked))

    async def _save_now(self) -> None:
        """Wait for the save in flight, then store the latest acked position if it is newer."""
        if self._saving is not None:
            saving, self._saving = self._saving, None
            await saving
        if self.acked > self.saved:
            await self._store_position(self.acked)

    async def _store_position(self, position: int) -> None:
        tracking = Tracking(self.name, position)
        try:
            await asyncio.to_thread(self._app.process_recorder.insert_tracking, tracking)
        except IntegrityError as error:
            # Single-row tracking refuses to go back: another relay saved a later position.
            raise LeadershipLost(f"position {position} already passed: {error}") from error
        self.saved = position

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
            await self._wait_any(self._nats_up, self._stop)
        self._next_lock_check = 0.0
        await self._check_leadership()

    async def _sleep(self, seconds: float) -> None:
        await self._wait_any(self._stop, timeout=seconds)

    @staticmethod
    async def _wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    # -- waking on NOTIFY -------------------------------------------------------------------------

    def _notify_channel(self) -> str | None:
        recorder = self._app.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            return recorder.channel_name
        return None  # SQLite has no NOTIFY: polling alone

    async def _listen(self, conninfo: str, channel: str) -> None:
        """Set the wake event on each NOTIFY; reconnect with backoff, never give up."""
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo,
                    autocommit=True,
                    connect_timeout=self._settings.connect_timeout_seconds,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=3,
                    keepalives_count=3,
                ) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._outages.end("notifications")
                    self._wake.set()  # whatever was appended while we were not listening
                    backoff = 0.1
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as error:
                self._outages.begin("notifications", error)
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)

    # -- reporting status -------------------------------------------------------------------------

    def _status_changed(self) -> None:
        self._status_dirty.set()

    async def _report_status(self) -> None:
        """Write state, connection and error on each change and as a heartbeat."""
        while True:
            if await self._write_status_safely():
                await self._wait_any(self._status_dirty, timeout=self._heartbeat_interval)
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
        if not self._status_table_ready:
            status_metadata.create_all(self._status_engine)
            self._status_table_ready = True
        values = {
            "state": self.state,
            "connected": self.connected,
            "error": self.last_error,
            "updated_at": datetime.now(UTC),
        }
        table = relay_status_table
        with self._status_engine.begin() as conn:
            updated = conn.execute(update(table).where(table.c.name == self.name).values(values))
            if updated.rowcount == 0:
                conn.execute(insert(table).values(name=self.name, **values))


class RelayThread:
    """A relay on its own event loop in a daemon thread: for tests and all-in-one processes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="relay", daemon=True)

    def start(self) -> RelayThread:
        self._thread.start()
        self._started.wait()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # noqa: BLE001 - kept for the owner thread to re-raise
            self.error = error
            self._started.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await self.relay.run(self._stop, on_ready=self.ready.set)

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise TimeoutError(
                f"relay not ready in {timeout}s (last error: {self.relay.last_error})"
            )

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"relay did not stop in {timeout}s")
        if self.error is not None:
            raise self.error

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the relay's loop (tests poke at the live relay this way)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)
