"""Edge sync over NATS: naming, the hub stream that sources every edge, and the cloud ingester.

An edge's relay is the ordinary relay (event_store/relay/) configured with the edge's stream
name and subject prefix (``edge_relay_spec``) and pointed at the edge's own nats-server. The hub
stream sources every edge stream through the edge's JetStream domain API (``$JS.edge-<node>.API``)
while the leaf link is up. The ingester reads the hub stream and appends each edge event into the
cloud store (event_store/edge_store.py): idempotent by event id, with a per-edge cursor (the
origin stream sequence) committed in the same transaction.

NATS sourcing silently skips what the origin no longer holds (nats-server#4459) and starts over
when the origin stream is re-created; NATS reports neither, so the ingester does: a jump in the
origin sequence past cursor + 1, or a changed origin ``created`` timestamp, is recorded as an
``EdgeSync.GapDetected`` event before the cursor moves past it.

The hub stream's consumer acknowledges nothing: the cloud store keeps the hub position with
each append and the consumer restarts from it (event_store/edge_feed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import nats.js.errors
from eventsourcing.persistence import StoredEvent
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)

from adapters.locks import LeaderLock
from adapters.nats_leaf import edge_domain
from domain.base import JanusAggregate
from domain.edge import EdgeSync, edge_sync_id, require_edge_node
from domain.meta import Actor, CommandContext
from event_store import nats_client
from event_store.application import JanusApplication
from event_store.edge_commands import EdgeDispatcher, ensure_command_stream, resolve_answers
from event_store.edge_feed import HubBatch, HubFeed
from event_store.edge_status import STALE_SECONDS, EdgeStatus, edge_statuses
from event_store.edge_store import EdgeEvent, EdgeSql, HubPosition
from event_store.messages import (
    H_AGGREGATE_ID,
    H_AGGREGATE_VERSION,
    H_TOPIC,
    StreamSpec,
    scan_event_id,
)
from event_store.nats import NATS_ERRORS, STORE_ERRORS

log = logging.getLogger("janus.edge")

# The status moved to event_store/edge_status.py; importers of this module still find it here.
__all__ = [
    "STALE_SECONDS",
    "EdgeIngester",
    "EdgeStatus",
    "IngestConfig",
    "edge_relay_spec",
    "edge_statuses",
    "edge_stream_name",
    "edge_subject_prefix",
    "ensure_hub_stream",
    "hub_stream_config",
    "node_of",
    "origin_sequence",
]

H_STREAM_SOURCE = "Nats-Stream-Source"
INGEST_ACTOR = Actor.system("edge-ingest")


def edge_stream_name(node: str) -> str:
    return f"janus-edge-{require_edge_node(node)}"


def edge_subject_prefix(root: str, node: str) -> str:
    return f"{root}.edge.{require_edge_node(node)}"


def edge_relay_spec(base: StreamSpec, root: str, node: str) -> StreamSpec:
    """The edge relay's stream: the node's own name and subjects, the base's limits."""
    return StreamSpec(
        name=edge_stream_name(node),
        subject_prefix=edge_subject_prefix(root, node),
        max_age_seconds=base.max_age_seconds,
        max_bytes=base.max_bytes,
        duplicate_window_seconds=base.duplicate_window_seconds,
    )


def hub_stream_config(name: str, nodes: list[str]) -> StreamConfig:
    """The hub stream: no subjects of its own, one external source per edge node."""
    sources = [
        StreamSource(
            name=edge_stream_name(node),
            external=ExternalStream(api=f"$JS.{edge_domain(node)}.API"),
        )
        for node in sorted(nodes)
    ]
    return StreamConfig(
        name=name,
        description="Janus edge events, sourced from every edge stream",
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        sources=sources,
    )


async def ensure_hub_stream(nc: NatsClient, name: str, nodes: list[str]) -> None:
    """Create the hub stream or add the sources it lacks; never delete or re-create it."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(hub_stream_config(name, nodes))
        log.info("edge: created hub stream %s sourcing %s", name, ", ".join(nodes))
        return
    have = {s.name for s in info.config.sources or []}
    if have >= {edge_stream_name(n) for n in nodes}:
        return
    known = [n for n in nodes] + [
        s.name.removeprefix("janus-edge-") for s in info.config.sources or []
    ]
    await js.update_stream(hub_stream_config(name, sorted(set(known))))
    log.info("edge: hub stream %s now sources %s", name, ", ".join(sorted(set(known))))


def origin_sequence(headers: dict[str, str]) -> int:
    """The edge stream sequence of a sourced message: ``<stream>[:<hash>] <seq> <filter> ...``."""
    value = headers.get(H_STREAM_SOURCE, "")
    parts = value.split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not a sourced message ({H_STREAM_SOURCE}: {value!r})")
    return int(parts[1])


def node_of(subject: str, root: str) -> str:
    head = f"{root}.edge."
    if not subject.startswith(head):
        raise ValueError(f"not an edge subject: {subject!r}")
    return subject[len(head) :].split(".", 1)[0]


@dataclass(frozen=True)
class IngestConfig:
    hub_url: str
    hub_stream: str
    subject_root: str
    nodes: list[str]
    durable: str = "janus-edge-ingest"
    batch_size: int = 2000
    probe_interval_seconds: float = 2.0
    connect_timeout_seconds: int = 3


class EdgeIngester:
    """Consumes the hub stream into the cloud store; ``run`` it once, on one event loop.

    With a ``lock``, only its holder ingests: a second ingester waits. Two at once would stay
    correct (every append is idempotent by event id under the append lock) but would keep
    re-creating each other's consumer of the hub stream.
    """

    def __init__(
        self,
        app: JanusApplication,
        config: IngestConfig,
        node_id: str,
        lock: LeaderLock | None = None,
    ) -> None:
        self._app = app
        self._lock = lock
        self._sql = EdgeSql(app)
        self._config = config
        self._edge_head = f"{config.subject_root}.edge."
        self._node_id = node_id
        self.appended = 0
        self.duplicates = 0
        self.gaps = 0
        self.conflicts = 0
        self.parked = 0
        self.dispatcher = EdgeDispatcher(app, config.subject_root)
        self._nc: NatsClient | None = None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        if self._lock is None:
            await self._run(stop, on_ready)
            return
        lock, waiting_said = self._lock, False
        while not stop.is_set():
            if not await asyncio.to_thread(lock.try_acquire):
                if not waiting_said:
                    log.info("edge: another ingester holds the lock; waiting to take over")
                    waiting_said = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            leading = asyncio.Event()  # set when stopped or when the lock is lost
            watch = asyncio.create_task(self._watch_lock(lock, stop, leading))
            try:
                await self._run(leading, on_ready)
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                await asyncio.to_thread(lock.release)

    async def _watch_lock(
        self, lock: LeaderLock, stop: asyncio.Event, leading: asyncio.Event
    ) -> None:
        while not stop.is_set() and await asyncio.to_thread(lambda: lock.held):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.probe_interval_seconds)
        if not stop.is_set():
            log.warning("edge: the ingest lock was lost; stopping until it is taken again")
        leading.set()

    async def _run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None) -> None:
        config = self._config
        await asyncio.to_thread(self._sql.setup)
        self._nc = await nats_client.connect(
            servers=config.hub_url,
            name=f"janus-edge-ingest:{self._node_id}",
            connect_timeout=config.connect_timeout_seconds,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
        try:
            await ensure_hub_stream(self._nc, config.hub_stream, config.nodes)
            await ensure_command_stream(self._nc, config.subject_root)
            feed = HubFeed(
                self._nc,
                self._sql,
                config.hub_stream,
                config.durable,
                f"{config.subject_root}.edge.>",
                config.batch_size,
            )
            await feed.open()
            if on_ready is not None:
                on_ready()
            probe = asyncio.create_task(self._probe_forever(stop))
            try:
                await self._consume(feed, stop)
            finally:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                await feed.close()
        finally:
            await self._nc.close()

    async def _consume(self, feed: HubFeed, stop: asyncio.Event) -> None:
        """Fetch and append; the next batch is fetched while this one is appended.

        Batches are appended strictly one after another: if one cannot be (stopped while the
        store is down), nothing fetched after it is appended either, so no later event can
        overtake it; the next start resumes after the last batch appended. A batch fetched
        when the stop came is still appended.
        """
        batch: HubBatch | None = None
        while batch is not None or not stop.is_set():
            if batch is None:
                batch = await feed.fetch()
                continue
            prefetch = None if stop.is_set() else asyncio.create_task(feed.fetch())
            try:
                appended = await self._ingest_or_back_off(batch, stop)
            except BaseException:
                await _abandon(prefetch)
                raise
            if not appended:
                await _abandon(prefetch)
                return  # stopped: the next start fetches this batch and the rest again
            batch = await prefetch if prefetch is not None else None

    # -- appending ------------------------------------------------------------------------------

    async def _ingest_or_back_off(self, batch: HubBatch, stop: asyncio.Event) -> bool:
        """Append a batch, retrying it in place while the cloud store fails; False if stopped.

        Never skipped: later messages would then overtake it, which would break each
        aggregate's order and look like a gap.
        """
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(self.ingest, batch.msgs, batch.position)
                return True
            except STORE_ERRORS as error:
                log.warning("edge: cloud store unavailable, retrying the batch: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
            delay = min(5.0, delay * 2)

    def ingest(self, msgs: list[Msg], hub: HubPosition | None = None) -> None:
        """Append a fetched batch, edge by edge, in each edge's order (blocking); the hub
        position (of the batch's last message) commits with the last edge's append."""
        by_node: dict[str, list[EdgeEvent]] = {}
        for msg in msgs:
            event = self._edge_event(msg)
            by_node.setdefault(event.node, []).append(event)
        last = list(by_node)[-1] if by_node else None
        for node, events in by_node.items():
            ordered = sorted(events, key=lambda e: e.origin_sequence)
            self._ingest_node(node, ordered, hub if node == last else None)

    def _edge_event(self, msg: Msg) -> EdgeEvent:
        headers = msg.headers or {}
        stored = StoredEvent(
            originator_id=UUID(headers[H_AGGREGATE_ID]),
            originator_version=int(headers[H_AGGREGATE_VERSION]),
            topic=headers[H_TOPIC],
            state=msg.data,
        )
        subject = msg.subject
        head = self._edge_head
        return EdgeEvent(
            # node_of's work with the prefix built once: this runs for every event.
            node=subject[len(head) :].partition(".")[0]
            if subject.startswith(head)
            else node_of(subject, self._config.subject_root),
            origin_sequence=origin_sequence(headers),
            event_id=scan_event_id(stored.state) or self._decode(stored).meta.event_id,
            stored=stored,
        )

    def _decode(self, stored: StoredEvent) -> Any:
        event = self._app.mapper.to_domain_event(stored)
        if not isinstance(event, JanusAggregate.Event):
            raise ValueError(f"not a Janus event: {stored.topic}")
        return event

    def _ingest_node(self, node: str, events: list[EdgeEvent], hub: HubPosition | None) -> None:
        cursor = self._sql.cursor(node)
        expected = (cursor.origin_sequence if cursor else 0) + 1
        for event in events:  # a jump anywhere in the batch, not only at its start
            if event.origin_sequence > expected:
                self._record_gap(node, expected, event.origin_sequence, "retention")
            expected = max(expected, event.origin_sequence + 1)
        # Every place, held ids' too: an event the cloud holds fills its own place with the
        # same bytes, a duplicate either way (the append checks the ids again, under its lock).
        taken = self._sql.taken([e.place for e in events])
        skip: set[UUID] = set()
        for event in events:
            held = taken.get(event.place)
            if held is None:
                continue
            skip.add(event.event_id)
            if held == event.stored.state:
                self.duplicates += 1  # appended before, or brought by `events import` (a repair)
            else:
                self._record_conflict(node, event)
        last_at: datetime = self._decode(events[-1].stored).timestamp
        result = self._sql.append(node, events, skip, last_at, hub)
        self.appended += len(result.positions)
        self.duplicates += result.duplicates
        if result.parked:
            self.parked += result.parked
            log.error(
                "edge %s: %d event(s) wait for earlier versions of their aggregates (a gap): "
                "repair with `janus edge import`",
                node,
                result.parked,
            )
        # Every batch, redelivered ones too: resolving is idempotent and finishes a crash here.
        stored = (e.stored for e in events)
        self.conflicts += resolve_answers(self._app, node, stored, self._node_id)

    # -- recording what went wrong --------------------------------------------------------------

    def _context(self, node: str, what: str) -> CommandContext:
        return CommandContext(
            command_id=f"edge-ingest:{node}:{what}",
            correlation_id=f"edge-sync:{node}",
            causation_id=f"edge-sync:{node}",
            actor=INGEST_ACTOR,
            node_id=self._node_id,
        )

    def _sync(self, node: str, ctx: CommandContext) -> EdgeSync:
        ident = edge_sync_id(node)
        if ident in self._app.repository:
            sync: EdgeSync = self._app.repository.get(ident)
            return sync
        return EdgeSync.open(node, ctx)

    def _record_gap(self, node: str, expected: int, found: int, reason: str) -> None:
        ctx = self._context(node, f"gap:{expected}:{found}")
        sync = self._sync(node, ctx)
        if sync.detect_gap(expected, found, reason, ctx):
            self._app.save(sync)
            self.gaps += 1
            log.error(
                "edge %s: gap: expected origin sequence %s, found %s (%s)",
                node,
                expected,
                found,
                reason,
            )

    def _record_conflict(self, node: str, event: EdgeEvent) -> None:
        ctx = self._context(node, f"conflict:{event.event_id}")
        sync = self._sync(node, ctx)
        aggregate_id, version = event.place
        if sync.record_conflict(event.event_id, aggregate_id, version, event.origin_sequence, ctx):
            self._app.save(sync)
            self.conflicts += 1

    # -- watching the edge streams --------------------------------------------------------------

    async def _probe_forever(self, stop: asyncio.Event) -> None:
        """Watch the edges, and send them the cloud's requests (the same connection, cadence)."""
        while not stop.is_set():
            assert self._nc is not None
            try:
                await self.dispatcher.dispatch(self._nc)
            except NATS_ERRORS + STORE_ERRORS as error:
                log.warning("edge: could not send requests: %s", error)
            for node in self._config.nodes:
                try:
                    await self.probe(node)
                except STORE_ERRORS as error:  # the next probe writes it; the status shows age
                    log.warning("edge: could not record the probe of %s: %s", node, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.probe_interval_seconds)

    async def probe(self, node: str) -> None:
        """Ask the edge's own JetStream (through the leaf link) how its stream stands."""
        assert self._nc is not None
        js = self._nc.jetstream(domain=edge_domain(node), timeout=1.0)
        try:
            info = await js.stream_info(edge_stream_name(node))
        except nats.js.errors.NotFoundError:
            await asyncio.to_thread(self._sql.observe, node, link="no-stream")
            return
        except NATS_ERRORS:
            await asyncio.to_thread(self._sql.observe, node, link="down")
            return
        created = info.created.isoformat() if info.created else None
        await asyncio.to_thread(self._check_identity, node, created, info.state.first_seq)
        await asyncio.to_thread(
            lambda: self._sql.observe(
                node,
                link="up",
                stream_created=created,
                first_sequence=info.state.first_seq,
                last_sequence=info.state.last_seq,
            )
        )

    def _check_identity(self, node: str, created: str | None, first_seq: int) -> None:
        cursor = self._sql.cursor(node)
        if cursor is None or created is None or cursor.stream_created in {None, created}:
            return
        self._record_gap(node, cursor.origin_sequence + 1, first_seq, "stream-recreated")
        self._sql.reset_identity(node, created)


async def _abandon(task: asyncio.Task[HubBatch | None] | None) -> None:
    """Stop a fetch whose messages nobody will append; the next start fetches them again."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
