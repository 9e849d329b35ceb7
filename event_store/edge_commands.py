"""Requests from the cloud to an edge over NATS, and their answers back into the cloud.

Cloud -> edge: the cloud's ``EdgeDispatcher`` publishes every ``EdgeRequest.Made`` still
unanswered to the hub's command stream, subject ``<root>.cmd.<node>``, with ``Nats-Msg-Id`` =
request id (a republish after a restart is dropped by the hub's duplicate window, and beyond it
the edge answers a request only once anyway). The edge's ``EdgeCommandConsumer`` pulls its own
subject from the hub's JetStream domain across the leaf link with a durable consumer, so requests
sent while the edge is cut off wait on the hub and arrive when the link returns. Each is applied
(by a callback: the edge's command path) before it is acked.

Edge -> cloud: the edge's answer (``EdgeRequestOutcome.Answered``) is an ordinary edge event and
syncs like every other; ``resolve_answers`` then resolves the cloud's request and, for a
conflict, records it on the edge's ``EdgeSync`` aggregate (shown by ``janus edge status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import nats
import nats.errors
import nats.js.errors
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from adapters.nats_leaf import HUB_DOMAIN
from domain.edge import EdgeSync, edge_sync_id, require_edge_node
from domain.edge_requests import EdgeRequest, EdgeRequestOutcome, RequestStatus
from domain.meta import Actor, CommandContext
from event_store.application import JanusApplication

log = logging.getLogger("janus.edge")

MADE_TOPIC = get_topic(EdgeRequest.Made)
RESOLVED_TOPIC = get_topic(EdgeRequest.Resolved)
ANSWERED_TOPIC = get_topic(EdgeRequestOutcome.Answered)
DISPATCH_ACTOR = Actor.system("edge-ingest")
NATS_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, OSError, asyncio.TimeoutError)
# Also what the hub's JetStream answers while it is reachable but not ready.
HUB_ERRORS: tuple[type[Exception], ...] = (*NATS_ERRORS, nats.js.errors.Error)


def command_stream_name(root: str) -> str:
    return f"janus-edge-commands-{root}"


def command_subject(root: str, node: str) -> str:
    return f"{root}.cmd.{require_edge_node(node)}"


async def ensure_command_stream(nc: NatsClient, root: str) -> None:
    js = nc.jetstream()
    try:
        await js.stream_info(command_stream_name(root))
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=command_stream_name(root),
                description="Janus requests from the cloud to edge nodes",
                subjects=[f"{root}.cmd.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
            )
        )


def request_payload(request: EdgeRequest) -> bytes:
    return json.dumps(
        {
            "request_id": str(request.id),
            "confirmation_id": str(request.confirmation_id),
            "kind": request.kind.value,
            "reason": request.reason,
            "requested_by": request.requested_by,
        }
    ).encode()


class EdgeDispatcher:
    """Cloud side: publishes unanswered requests; its position lives in memory (a restart
    republishes from the start, which the duplicate window and the edge's once-only answer
    absorb)."""

    def __init__(self, app: JanusApplication, root: str) -> None:
        self._app = app
        self._root = root
        self._position = 0
        self.published = 0

    def pending(self, limit: int = 500) -> list[EdgeRequest]:
        page = list(
            self._app.recorder.select_notifications(
                start=self._position, limit=limit, topics=[MADE_TOPIC], inclusive_of_start=False
            )
        )
        found: list[EdgeRequest] = []
        for notification in page:
            self._position = notification.id
            request: EdgeRequest = self._app.repository.get(UUID(str(notification.originator_id)))
            if request.status is RequestStatus.SENT:
                found.append(request)
        return found

    async def dispatch(self, nc: NatsClient) -> int:
        """Publish what is pending; the position moves only past what the hub acknowledged."""
        js = nc.jetstream()
        published = 0
        while True:
            start = self._position
            requests = await asyncio.to_thread(self.pending)
            if not requests:
                return published
            try:
                for request in requests:
                    await js.publish(
                        command_subject(self._root, request.node),
                        request_payload(request),
                        headers={"Nats-Msg-Id": str(request.id)},
                    )
                    published += 1
                    self.published += 1
            except NATS_ERRORS:
                self._position = start  # the page again on the next round (repeats: no-ops)
                raise


@dataclass(frozen=True)
class ConsumerConfigEdge:
    edge_url: str
    root: str
    node: str
    connect_timeout_seconds: int = 3


class EdgeCommandConsumer:
    """Edge side: pulls its requests from the hub's domain and applies each before the ack."""

    def __init__(self, config: ConsumerConfigEdge, apply: Callable[[dict[str, Any]], str]) -> None:
        self._config = config
        self._apply = apply
        self.applied: list[str] = []

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        config = self._config
        nc = await nats.connect(
            servers=config.edge_url,
            name=f"janus-edge-commands:{config.node}",
            connect_timeout=config.connect_timeout_seconds,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
        try:
            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                try:
                    await self._consume(nc, stop)
                except HUB_ERRORS as error:
                    # The hub is unreachable (link down): requests wait there for us.
                    log.info("edge %s: hub commands unavailable: %s", config.node, error)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            await nc.close()

    async def _consume(self, nc: NatsClient, stop: asyncio.Event) -> None:
        config = self._config
        js = nc.jetstream(domain=HUB_DOMAIN, timeout=2.0)
        sub = await js.pull_subscribe(
            command_subject(config.root, config.node),
            durable=f"janus-edge-cmd-{config.node}",
            stream=command_stream_name(config.root),
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=-1),
        )
        while not stop.is_set():
            try:
                msgs = await sub.fetch(50, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                try:
                    outcome = await asyncio.to_thread(self._apply, json.loads(msg.data))
                except Exception as error:  # noqa: BLE001 - the local store failed: try again
                    # ``apply`` answers what can never apply (a refusal is an outcome); what
                    # raises is transient, so the request comes back rather than being lost.
                    log.warning("edge %s: request not applied yet: %s", config.node, error)
                    await msg.nak(delay=1.0)
                    continue
                self.applied.append(outcome)
                await msg.ack()  # after the save: a lost ack is a redelivered, answered no-op


# -- answers, as the cloud ingests them ---------------------------------------------------------


def resolve_answers(
    app: JanusApplication, node: str, events: Iterable[StoredEvent], node_id: str
) -> int:
    """Resolve the cloud's requests the edge answered in ``events``; returns conflicts recorded.

    Called for every ingested batch, new or redelivered: both resolutions are idempotent, so a
    crash between the append and this call is finished by the redelivery.
    """
    conflicts = 0
    for stored in events:
        if stored.topic != ANSWERED_TOPIC:
            continue
        answer: Any = app.mapper.to_domain_event(stored)
        ctx = CommandContext(
            command_id=f"edge-answer:{answer.request_id}",
            correlation_id=f"edge-request:{answer.request_id}",
            causation_id=str(answer.meta.event_id),
            actor=DISPATCH_ACTOR,
            node_id=node_id,
        )
        try:
            request: EdgeRequest = app.repository.get(answer.request_id)
        except AggregateNotFoundError:
            continue  # answered a request another cloud sent: not ours to resolve
        to_save: list[Any] = []
        if request.resolve(answer.outcome, ctx):
            to_save.append(request)
        if answer.outcome != "applied":
            sync = _sync(app, node, ctx)
            if sync.record_request_conflict(
                answer.request_id, answer.confirmation_id, answer.outcome, ctx
            ):
                to_save.append(sync)
                conflicts += 1
        if to_save:
            app.save(*to_save)
    return conflicts


def _sync(app: JanusApplication, node: str, ctx: CommandContext) -> EdgeSync:
    ident = edge_sync_id(node)
    if ident in app.repository:
        sync: EdgeSync = app.repository.get(ident)
        return sync
    return EdgeSync.open(node, ctx)


def edge_request_list(app: JanusApplication, limit: int = 1_000) -> list[EdgeRequest]:
    """The latest requests this node sent to edges, newest first, each as it now stands."""
    ids: list[UUID] = []
    position = 0
    while True:
        page = list(
            app.recorder.select_notifications(
                start=position, limit=1_000, topics=[MADE_TOPIC], inclusive_of_start=False
            )
        )
        if not page:
            break
        ids.extend(UUID(str(n.originator_id)) for n in page)
        position = page[-1].id
    found: list[EdgeRequest] = [app.repository.get(i) for i in reversed(ids[-limit:])]
    return found
