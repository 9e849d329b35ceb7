"""Feeds a SQL projection from JetStream: one durable pull consumer per projection version.

The view's stored position is the only truth about progress. The consumer is a cursor that may be
thrown away and re-created at the stream sequence after that position, so these rules keep the
view equal to the log whatever NATS, the network or a SIGKILL does:

* Apply in stream order and never past a hole. Each delivery must carry the next stream sequence;
  a jump means a delivery went missing (in flight when a connection broke, or queued in a
  subscription we dropped) or was deleted, so the consumer starts again after the stored
  position. After any such discontinuity, the first new event must be the log's next event
  after the stored position; when the stream lacks it (retention, a purge, a relay that started
  late) the projection first catches up from the log itself.
* Acknowledge only what the view has committed. Acks are cumulative (``AckPolicy.ALL``): in one
  ordered stream, "everything up to here is in the view" is exactly what an ack says.
* A poison event (the runner stalls) or a message that is not a Janus event holds the feed at
  that message, un-acked and visible in the status, until an operator retries, skips or
  removes it. Nothing after it is applied meanwhile.

Over 500 lines on purpose: what is left here is one state machine (subscribe, accept, drain,
hold, recover) whose rules above span all of it. The pull requests
(``event_store.jetstream_pull``, shared with the edge ingester), where the consumer starts
(``jetstream_cursor``) and the status row (``feed_status``) live apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import nats
from eventsourcing.persistence import Notification
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)
from nats.js.errors import NotFoundError

from event_store.heartbeat import StatusRow
from event_store.jetstream_pull import Puller
from event_store.messages import StreamSpec, notification_from_message
from event_store.nats import NATS_ERRORS, StreamMismatch, ensure_stream
from event_store.nats import STORE_ERRORS as SHARED_STORE_ERRORS
from projections.collector import collector_paused
from projections.feed_status import DEFAULT_HEARTBEAT, FeedState, FeedStatus, feed_status_table
from projections.jetstream_cursor import ensure_consumer, start_sequence
from projections.registry import Runner, TargetUnavailable

log = logging.getLogger(__name__)

# The store errors retried with backoff: the shared set (event_store.nats), which a feed's own
# targets may extend here (the supervisor uses this set too).
STORE_ERRORS: tuple[type[Exception], ...] = (*SHARED_STORE_ERRORS, TargetUnavailable)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def consumer_name(projection: str, version: int) -> str:
    """``relational`` v1 -> ``relational-v1``: a new version gets its own cursor for blue/green."""
    return _UNSAFE_NAME.sub("_", f"{projection}-v{version}")


@dataclass(frozen=True)
class FeedConfig:
    batch_size: int = 500
    # Finite, so a dead subscription is noticed and a stop request is honoured within it.
    fetch_timeout: float = 1.0
    # This many fetch timeouts without a delivery make the watchdog ask the server why.
    watchdog_fetches: int = 5
    # Consecutive failures before the connection itself is thrown away and made again.
    max_errors: int = 3
    ack_wait: float = 30.0
    # While stalled or blocked by another runner: how often to look again.
    poll_interval: float = 0.5
    backoff_max: float = 5.0
    connect_timeout: int = 2
    reconnect_wait: float = 0.5
    # The client's own reconnects before it gives up and the feed's backoff takes over.
    client_reconnects: int = 5
    # How often the status row is rewritten when nothing changes, to show the feed is alive.
    heartbeat: float = DEFAULT_HEARTBEAT

    @property
    def max_ack_pending(self) -> int:
        return 2 * self.batch_size


class _Delivery(NamedTuple):
    msg: Msg
    seq: int
    notification: Notification


@dataclass(frozen=True)
class _Foreign:
    seq: int
    reason: str


class _Resubscribe(Exception):
    """Control flow: drop the subscription and start again from the stored position."""


class JetStreamFeed:
    def __init__(
        self,
        runner: Runner,
        nats_url: str,
        spec: StreamSpec,
        config: FeedConfig | None = None,
    ) -> None:
        self.runner = runner
        self.nats_url = nats_url
        self.spec = spec
        self.config = config or FeedConfig()
        self.consumer = consumer_name(runner.projection.name, runner.projection.version)
        self.resubscribes = 0
        self.connects = 0
        self.redeliveries = 0
        self._filter = f"{spec.subject_prefix}.>"
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._puller: Puller | None = None
        self._held: list[_Delivery] = []
        self._next_seq: int | None = None
        self._unverified = True
        self._progressing = True
        self._gap = False
        self._foreign: _Foreign | None = None
        self._last_delivery = time.monotonic()
        self._failures = 0
        self._paused_noted = False
        self._outage_since: float | None = None
        self._state = FeedState.STARTING
        self._error: str | None = None
        self._status_dirty = asyncio.Event()
        self._status_row = StatusRow(runner.engine, feed_status_table, self.consumer)

    def status(self) -> FeedStatus:
        return FeedStatus(
            self.consumer,
            self._state,
            self._error,
            self._next_seq,
            self.resubscribes,
            self.connects,
            self.redeliveries,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set. Outages are retried with backoff, never fatal."""
        reported = asyncio.Event()
        reporter = asyncio.create_task(self._report_status(reported))
        try:
            while not stop.is_set():
                try:
                    await self._subscribe()
                    if on_ready is not None:
                        on_ready()
                    await self._consume(stop)
                except _Resubscribe as why:
                    log.info("%s: re-creating the subscription: %s", self.consumer, why)
                    self.resubscribes += 1
                except (*NATS_ERRORS, *STORE_ERRORS) as error:
                    await self._failed(error, stop)
        finally:
            await self._disconnect()
            self._set_state(FeedState.STOPPED)
            reported.set()
            await reporter

    async def _failed(self, error: BaseException, stop: asyncio.Event) -> None:
        self._failures += 1
        self._outage(error)
        if isinstance(error, NATS_ERRORS) and (
            self._failures >= self.config.max_errors or _is_connection_error(error)
        ):
            await self._disconnect()
        delay = min(self.config.backoff_max, 0.1 * 2**self._failures)
        await pause(stop, delay)

    async def _connect(self) -> JetStreamContext:
        self.connects += 1
        nc = NatsClient()

        async def disconnected() -> None:
            # Only this client's own loss: a client the feed replaced says nothing about now.
            if self._nc is nc:
                self._outage("NATS connection lost")

        await nc.connect(
            self.nats_url,
            name=f"janus-projector-{self.consumer}",
            connect_timeout=self.config.connect_timeout,
            # Typed int, but only ever slept on: fractions of a second work.
            reconnect_time_wait=self.config.reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=self.config.client_reconnects,
            error_cb=self._on_nats_error,
            disconnected_cb=disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._nc = nc
        self._js = nc.jetstream()
        await self._ensure_stream(self._js)
        return self._js

    async def _disconnect(self) -> None:
        nc, self._nc, self._js, self._puller = self._nc, None, None, None
        if nc is None or nc.is_closed:
            return
        try:
            # Flush first: the last acks are worth sending, the close itself drops them.
            await nc.flush(timeout=1)
        except NATS_ERRORS as error:
            log.debug("%s: acks not flushed on close (%s); they will be redelivered", self, error)
        await nc.close()

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream if the relay has not yet; refuse one that is not our log's copy."""
        await ensure_stream(js, self.spec, reconcile=False, who=self.consumer)

    # -- subscription ----------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        js = self._js
        if js is None or self._nc is None or self._nc.is_closed:
            js = await self._connect()
        await self._unsubscribe()
        position = await asyncio.to_thread(lambda: self.runner.position)
        start = await start_sequence(js, self.spec.name, self._filter, position)
        config = self._consumer_config(start, fresh=position == 0)
        await ensure_consumer(js, self.spec.name, config, start)
        assert self._nc is not None
        self._puller = Puller(self._nc, self.spec.name, self.consumer)
        await self._puller.start()
        self._held, self._next_seq, self._gap, self._foreign = [], None, False, None
        self._unverified = True
        self._progressing = True
        self._last_delivery = time.monotonic()
        self._set_state(FeedState.RUNNING)
        log.info(
            "%s: subscribed to %s from stream sequence %s (view position %s)",
            self.consumer,
            self.spec.name,
            start,
            position,
        )

    async def _unsubscribe(self) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            await puller.stop()

    def _consumer_config(self, start: int, fresh: bool) -> ConsumerConfig:
        policy = DeliverPolicy.ALL if fresh else DeliverPolicy.BY_START_SEQUENCE
        return ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            description=f"Janus projection {self.runner.name} v{self.runner.projection.version}",
            deliver_policy=policy,
            opt_start_seq=None if fresh else start,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.config.ack_wait,
            max_ack_pending=self.config.max_ack_pending,
            filter_subject=self._filter,
        )

    # -- consuming -------------------------------------------------------------------------------

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._held:
                await self._drain(stop)
            elif self._gap:
                raise _Resubscribe(f"stream sequence {self._next_seq} was not delivered")
            elif self._foreign is not None:
                await self._hold_foreign(self._foreign, stop)
            else:
                await self._accept(await self._fetch())

    async def _fetch(self) -> Sequence[Msg]:
        assert self._puller is not None
        try:
            msgs = await self._puller.fetch(self.config.batch_size, self.config.fetch_timeout)
        except TimeoutError:
            await self._watchdog()
            return []
        self._last_delivery = time.monotonic()
        self._paused_noted = False
        self._recovered()
        return msgs

    async def _watchdog(self) -> None:
        """A pull subscription can go silent after a NATS restart: ask the server if it should."""
        silent = time.monotonic() - self._last_delivery
        if silent < self.config.watchdog_fetches * self.config.fetch_timeout:
            return
        assert self._js is not None
        info = await self._js.consumer_info(self.spec.name, self.consumer)
        self._last_delivery = time.monotonic()
        self._recovered()
        if info.paused:
            self._note_pause()
            return
        if info.num_pending or info.num_ack_pending:
            raise _Resubscribe(
                f"no delivery for {silent:.1f}s with {info.num_pending} pending "
                f"and {info.num_ack_pending} awaiting ack"
            )

    async def _accept(self, msgs: Sequence[Msg]) -> None:
        """Hold deliveries in stream order, stopping at a hole or at a message not from Janus."""
        # Below this, everything is in the view: a redelivery there only lost its ack.
        applied_below = self._held[0].seq if self._held else self._next_seq
        stale: Msg | None = None
        for msg in msgs:
            seq, delivered = _sequence_and_deliveries(msg)
            self.redeliveries += delivered > 1
            if self._next_seq is not None and seq < self._next_seq:
                if applied_below is not None and seq < applied_below:
                    stale = msg
                continue
            if self._next_seq is not None and seq > self._next_seq:
                self._gap = True
                break
            try:
                notification = notification_from_message(msg.headers or {}, msg.data)
            except ValueError as error:
                self._foreign = _Foreign(seq, str(error))
                break
            self._held.append(_Delivery(msg, seq, notification))
            self._next_seq = seq + 1
        if stale is not None:
            await stale.ack()  # cumulative: stops the redeliveries of everything up to it

    async def _drain(self, stop: asyncio.Event) -> None:
        """Apply the held deliveries, acking what committed; hold the rest while blocked."""
        while self._held and not stop.is_set():
            if self._unverified and not await self._continues_the_log():
                await self._blocked(stop)
                continue
            with collector_paused(0):
                prefetch = self._prefetch()
                try:
                    done = await asyncio.to_thread(self._apply, list(self._held))
                except BaseException:
                    await _abandon(prefetch)
                    raise
                self._progressing = done > 0
                if done:
                    await self._held[done - 1].msg.ack()
                    del self._held[:done]
                    self._set_state(FeedState.RUNNING)
                if prefetch is not None:
                    await self._accept(await prefetch)
            if not done:
                await self._blocked(stop)

    def _prefetch(self) -> asyncio.Task[Sequence[Msg]] | None:
        """Fetch the next batch while this one is applied: the apply thread mostly waits on the
        database, so the fetch costs little time of its own. Not when something already stops
        the feed after these deliveries, nor while they wait behind a stall."""
        if not self._progressing or self._gap or self._foreign is not None:
            return None
        return asyncio.create_task(self._fetch())

    def _apply(self, held: list[_Delivery]) -> int:
        """How many leading deliveries the view now holds (all of them unless it stalled)."""
        applied = self.runner.apply([d.notification for d in held])
        position = self.runner.position if applied.position is None else applied.position
        done = 0
        while done < len(held) and held[done].notification.id <= position:
            done += 1
        return done

    async def _blocked(self, stop: asyncio.Event) -> None:
        status = await asyncio.to_thread(self.runner.status)
        if status.state == "stalled":
            self._set_state(
                FeedState.STALLED,
                f"projection stalled at position {status.error_position}: {status.error}; "
                "holding it and later events un-acked until retried or skipped",
            )
        await pause(stop, self.config.poll_interval)

    async def _continues_the_log(self) -> bool:
        """After a discontinuity the first new event must be the log's next one.

        False while the runner is stalled (nothing can be applied anyway); raises _Resubscribe
        after taking from the log what the stream lacked.
        """
        status = await asyncio.to_thread(self.runner.status)
        if status.state == "stalled":
            return False
        first_new = next(
            (d.notification.id for d in self._held if d.notification.id > status.position), None
        )
        if first_new is None:
            return True  # all old: the next new event is checked instead
        following = await asyncio.to_thread(self.runner.reader.read_after, status.position, 1)
        if following and following[0].id == first_new:
            self._unverified = False
            return True
        if not following or following[0].id > first_new:
            raise StreamMismatch(
                f"stream {self.spec.name} holds position {first_new}, which the log does not "
                f"have after {status.position}: is the stream shared with another store?"
            )
        log.warning(
            "%s: stream %s lacks log positions %s to %s; catching up from the log",
            self.consumer,
            self.spec.name,
            following[0].id,
            first_new - 1,
        )
        await asyncio.to_thread(self._catch_up_from_log, first_new - 1)
        raise _Resubscribe("caught up from the log")

    def _catch_up_from_log(self, target: int) -> None:
        while self.runner.position < target:
            if self.runner.run_once() == 0:
                return  # stalled, or another runner moved it: the next check sees which

    async def _hold_foreign(self, foreign: _Foreign, stop: asyncio.Event) -> None:
        """A message the contract cannot read is a poison too, but not one the runner can skip:
        it has no position. It holds the feed until someone removes it from the stream."""
        self._set_state(
            FeedState.STALLED,
            f"stream {self.spec.name} sequence {foreign.seq} is not a Janus event "
            f"({foreign.reason}); remove it (nats stream rmm {self.spec.name} {foreign.seq}) "
            "or fix its publisher",
        )
        assert self._js is not None
        while not stop.is_set():
            try:
                await self._js.get_msg(self.spec.name, seq=foreign.seq)
            except NotFoundError:
                raise _Resubscribe(f"sequence {foreign.seq} was removed") from None
            await pause(stop, self.config.poll_interval)

    def _note_pause(self) -> None:
        """Someone paused the consumer on purpose: say so once, and do not fight it."""
        if not self._paused_noted:
            self._paused_noted = True
            log.warning("%s: consumer paused on the server; waiting for it", self.consumer)

    # -- reporting -------------------------------------------------------------------------------

    def _set_state(self, state: FeedState, error: str | None = None) -> None:
        if (state, error) == (self._state, self._error):
            return
        self._state, self._error = state, error
        self._status_dirty.set()
        if state == FeedState.STALLED:
            log.error("%s: %s", self.consumer, error)

    def _outage(self, error: BaseException | str) -> None:
        """Log an outage once, however long it lasts; the recovery is logged once too."""
        self._set_state(FeedState.DISCONNECTED, str(error))
        if self._outage_since is not None:
            log.debug("%s: still unavailable: %r", self.consumer, error)
            return
        self._outage_since = time.monotonic()
        what = "store" if isinstance(error, STORE_ERRORS) else "NATS"
        log.warning("%s: %s unavailable (%r); retrying with backoff", self.consumer, what, error)

    def _recovered(self) -> None:
        self._failures = 0
        if self._outage_since is None:
            return
        log.warning(
            "%s: available again after %.1fs", self.consumer, time.monotonic() - self._outage_since
        )
        self._outage_since = None
        self._set_state(FeedState.RUNNING)

    async def _report_status(self, finished: asyncio.Event) -> None:
        """Write the status on each change and as a heartbeat; once more when ``finished``."""
        while not finished.is_set():
            await self._write_status_safely()
            await pause(self._status_dirty, self.config.heartbeat)
            self._status_dirty.clear()
        await self._write_status_safely()

    async def _write_status_safely(self) -> None:
        try:
            await asyncio.to_thread(self._write_status, self.status())
        except STORE_ERRORS as error:
            # The feed's own work meets the same store and reports the outage once.
            log.debug("%s: status not written: %r", self.consumer, error)

    def _write_status(self, status: FeedStatus) -> None:
        self._status_row.write(
            projection=self.runner.name,
            state=status.state.value,
            error=status.error,
            next_sequence=status.next_sequence,
            resubscribes=status.resubscribes,
            connects=status.connects,
            redeliveries=status.redeliveries,
        )

    async def _on_nats_error(self, error: Exception) -> None:
        log.debug("%s: nats client: %r", self.consumer, error)

    async def _on_reconnected(self) -> None:
        log.info("%s: NATS connection re-established", self.consumer)

    def __str__(self) -> str:
        return self.consumer


def _sequence_and_deliveries(msg: Msg) -> tuple[int, int]:
    """The stream sequence and delivery count from the reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``:
    read directly, as ``msg.metadata`` also builds a datetime and three objects per message.
    The longer form (with a domain and account hash) goes through ``msg.metadata``.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5]), int(tokens[4])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.num_delivered


def _is_connection_error(error: BaseException) -> bool:
    return isinstance(error, (nats.errors.ConnectionClosedError, nats.errors.NoServersError))


async def _abandon(task: asyncio.Task[Sequence[Msg]] | None) -> None:
    """Stop a fetch whose messages nobody will apply; the consumer delivers them again."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned fetch had failed too: %r", task.exception())


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` or until stopped, whichever is first.

    Not ``wait_for``: on Python 3.11 it swallows a cancellation that races the event being set.
    """
    with contextlib.suppress(TimeoutError):  # the expected outcome: the pause is over
        async with asyncio.timeout(seconds):
            await stop.wait()
