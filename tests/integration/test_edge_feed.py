"""The ingester's hub feed acknowledges nothing: it resumes from the position the cloud committed
with its appends, and starts over from there when a delivery goes missing (real nats-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StreamConfig, StreamSource

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from event_store.edge_feed import HubBatch, HubFeed
from event_store.edge_store import EdgeSql
from event_store.edge_sync import H_STREAM_SOURCE
from event_store.jetstream_pull import Puller
from tests.servers import NatsServer, unique_name
from tests.support.commands import as_alice
from tests.support.edge import DIRECT_ROOT, direct_ingester, events_of_node, hub_messages

CONSUMER = "ingest"
SUBJECTS = f"{DIRECT_ROOT}.edge.>"


@pytest.fixture
def edge(tmp_path: Path) -> Any:
    built = Janus.build(Settings(home=tmp_path / "edge", node_id="n1"))
    try:
        for i in range(6):
            built.commands.submit_goal(m.SubmitGoal(text=f"goal {i}"), as_alice())
        yield built
    finally:
        built.close()


async def hub_stream(nc: NatsClient, msgs: list[Msg]) -> str:
    """An edge stream holding the messages and a hub stream sourcing it, as in production
    (the hub adds the origin sequence header): hub sequence i holds msgs[i - 1]."""
    js = nc.jetstream()
    name = unique_name("hub")
    await js.add_stream(StreamConfig(name=f"{name}-edge", subjects=[SUBJECTS]))
    for msg in msgs:
        headers = {k: v for k, v in (msg.headers or {}).items() if k != H_STREAM_SOURCE}
        await js.publish(msg.subject, msg.data, stream=f"{name}-edge", headers=headers)
    await source_edge(nc, name, len(msgs))
    return name


async def source_edge(nc: NatsClient, name: str, count: int) -> None:
    """(Re)create the hub stream ``name`` sourcing its edge stream; wait until it holds all."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, sources=[StreamSource(name=f"{name}-edge")]))
    async with asyncio.timeout(30):
        while (await js.stream_info(name)).state.messages < count:
            await asyncio.sleep(0.02)  # polling the condition itself, not a guess at timing


def feed_of(nc: NatsClient, cloud: Janus, stream: str, batch: int) -> HubFeed:
    return HubFeed(nc, EdgeSql.of(cloud.app), stream, CONSUMER, SUBJECTS, batch)


async def drain(feed: HubFeed, tries: int = 20) -> list[HubBatch]:
    """Batches until one fetch comes back with nothing in it after something came."""
    batches: list[HubBatch] = []
    for _ in range(tries):
        batch = await feed.fetch()
        if batch is None and batches:
            break
        if batch is not None:
            batches.append(batch)
    return batches


def stream_sequences(batches: list[HubBatch]) -> list[int]:
    return [msg.metadata.sequence.stream for batch in batches for msg in batch.msgs]


def test_a_restarted_feed_resumes_after_the_position_committed_with_the_append(
    janus: Janus, edge: Janus, nats_server_control: NatsServer
) -> None:
    msgs = hub_messages(edge)
    sink = direct_ingester(janus)

    async def story() -> tuple[list[int], list[int]]:
        nc = await nats.connect(nats_server_control.url)
        try:
            stream = await hub_stream(nc, msgs)
            first = feed_of(nc, janus, stream, batch=4)
            await first.open()
            batch = await first.fetch()
            assert batch is not None
            sink.ingest(batch.msgs, batch.position)
            await first.close()  # the ingester stops (or dies) here
            again = feed_of(nc, janus, stream, batch=4)
            await again.open()
            rest = await drain(again)
            await again.close()
            return stream_sequences([batch]), stream_sequences(rest)
        finally:
            await nc.close()

    appended, rest = asyncio.run(story())
    assert (appended, rest) == ([1, 2, 3, 4], [5, 6])
    assert len(events_of_node(janus.app, "n1")) == 4


def test_a_delivery_the_feed_never_got_makes_it_start_over_from_the_cloud(
    janus: Janus, edge: Janus, nats_server_control: NatsServer
) -> None:
    msgs = hub_messages(edge)
    sink = direct_ingester(janus)

    async def story() -> list[int]:
        nc = await nats.connect(nats_server_control.url)
        try:
            stream = await hub_stream(nc, msgs)
            feed = feed_of(nc, janus, stream, batch=2)
            await feed.open()
            batch = await feed.fetch()
            assert batch is not None
            sink.ingest(batch.msgs, batch.position)
            thief = Puller(nc, stream, CONSUMER)  # takes delivery 3: the feed never sees it
            await thief.start()
            assert len(await thief.fetch(1, timeout=5)) == 1
            await thief.stop()
            later = await drain(feed)
            for each in later:
                sink.ingest(each.msgs, each.position)
            await feed.close()
            return stream_sequences(later)
        finally:
            await nc.close()

    assert asyncio.run(story()) == [3, 4, 5, 6]
    assert (sink.appended, sink.duplicates) == (6, 0)


def test_a_re_created_hub_stream_is_read_from_its_start(
    janus: Janus, edge: Janus, nats_server_control: NatsServer
) -> None:
    msgs = hub_messages(edge)
    sink = direct_ingester(janus)

    async def story() -> list[int]:
        nc = await nats.connect(nats_server_control.url)
        try:
            js = nc.jetstream()
            stream = await hub_stream(nc, msgs)
            feed = feed_of(nc, janus, stream, batch=6)
            await feed.open()
            for batch in await drain(feed):
                sink.ingest(batch.msgs, batch.position)
            await feed.close()
            await js.delete_stream(stream)
            await source_edge(nc, stream, len(msgs))  # same name, sequences start over
            again = feed_of(nc, janus, stream, batch=6)
            await again.open()
            rest = await drain(again)
            for batch in rest:
                sink.ingest(batch.msgs, batch.position)
            await again.close()
            return stream_sequences(rest)
        finally:
            await nc.close()

    assert asyncio.run(story()) == [1, 2, 3, 4, 5, 6]
    assert (sink.appended, sink.duplicates) == (6, 6)
