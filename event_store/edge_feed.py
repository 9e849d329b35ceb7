"""The ingester's feed from the hub stream: nothing acknowledged, resumed from the cloud's position.

An explicit ack per message cost a Python call on the event loop and a message to the server
for every event, and the consumer's delivery state only repeated what the cloud store knows
better: the hub stream sequence of the last message appended, committed in the append's own
transaction (``HubPosition``, event_store/edge_store.py). So the consumer acknowledges nothing
(``AckPolicy.NONE``) and is created anew at that position + 1 each time the ingester starts: a
crash between a delivery and its commit costs a redelivery, never an event.

With no acks the server never redelivers, so the feed itself notices a delivery it did not get
(a reconnect, a hub restart, a late copy): consumer sequences count deliveries one by one, so a
batch whose sequences do not follow on from the last batch's, or skip inside it, is dropped and
the consumer is created again from the cloud's position; so is one the server no longer knows
(a fetch error). Whatever was appended meanwhile comes again as duplicates: no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from event_store.edge_store import EdgeSql, HubPosition
from event_store.jetstream_pull import Puller
from event_store.nats import NATS_ERRORS

log = logging.getLogger("janus.edge")

FETCH_TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class HubBatch:
    """Deliveries in hub stream order, and the hub position of the last one."""

    msgs: list[Msg]
    position: HubPosition


class HubFeed:
    """Batches from one consumer of the hub stream, in order and without holes, or none."""

    def __init__(
        self,
        nc: NatsClient,
        sql: EdgeSql,
        stream: str,
        consumer: str,
        filter_subject: str,
        batch_size: int,
    ) -> None:
        self._nc = nc
        self._sql = sql
        self._stream = stream
        self._consumer = consumer
        self._filter = filter_subject
        self._batch_size = batch_size
        self._puller: Puller | None = None
        self._created: str | None = None
        self._next = 1  # the consumer sequence the next delivery must carry
        self.restarts = 0

    async def open(self) -> None:
        """(Re)create the consumer just past the cloud's position, and pull from it."""
        await self.close()
        js = self._nc.jetstream()
        info = await js.stream_info(self._stream)
        created = info.created.isoformat() if info.created else None
        saved = await asyncio.to_thread(self._sql.hub_position, self._stream)
        start = 1
        if saved is not None and saved.created == created:
            start = saved.sequence + 1
        elif saved is not None:
            log.warning("edge: hub stream %s was re-created: from its start", self._stream)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self._stream, self._consumer)
        await js.add_consumer(
            self._stream,
            ConsumerConfig(
                name=self._consumer,
                durable_name=self._consumer,
                filter_subject=self._filter,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
            ),
        )
        puller = Puller(self._nc, self._stream, self._consumer)
        await puller.start()
        self._puller, self._created, self._next = puller, created, 1

    async def close(self) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await puller.stop()

    async def fetch(self) -> HubBatch | None:
        """The next batch, or None: nothing came, or the consumer had to start over."""
        try:
            if self._puller is None:
                self.restarts += 1
                await self.open()
            assert self._puller is not None
            msgs = await self._puller.fetch(self._batch_size, timeout=FETCH_TIMEOUT_SECONDS)
            return self._in_order(msgs)
        except TimeoutError:  # nothing came (nats-py's own timeouts are TimeoutErrors too)
            return None
        except NATS_ERRORS as error:
            log.warning("edge: pulling from the hub failed, starting over: %s", error)
            await self.close()
            await asyncio.sleep(RETRY_SECONDS)
            return None

    def _in_order(self, msgs: list[Msg]) -> HubBatch:
        """The batch, if its deliveries follow on from the last batch's without a hole."""
        first, last = msgs[0].metadata.sequence, msgs[-1].metadata.sequence
        if first.consumer != self._next or last.consumer - first.consumer + 1 != len(msgs):
            raise Discontinuity(
                f"deliveries {first.consumer}..{last.consumer} ({len(msgs)}), "
                f"expected from {self._next}"
            )
        self._next = last.consumer + 1
        return HubBatch(msgs, HubPosition(self._stream, self._created, last.stream))


class Discontinuity(nats.errors.Error):
    """A delivery went missing or came twice: the consumer starts over from the cloud."""
