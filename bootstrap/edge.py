"""Wires edge sync: an edge's settings (its relay is the ordinary one), the ingester, the status."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters.nats_leaf import LocalNatsServer, edge_plan
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.edge_requests import ApplyEdgeRequest, EdgeRequests
from commands.errors import CommandError, ConcurrencyConflict, StoreUnavailable
from commands.invocation import Invocation
from domain.edge import require_edge_node
from domain.edge_requests import EdgeRequest
from domain.errors import DomainError
from domain.meta import Actor, ActorKind
from event_store.edge_commands import ConsumerConfigEdge, EdgeCommandConsumer, edge_request_list
from event_store.edge_sync import (
    EdgeIngester,
    EdgeStatus,
    IngestConfig,
    edge_statuses,
    edge_stream_name,
    edge_subject_prefix,
)

log = logging.getLogger("janus.edge")


def edge_node_settings(settings: Settings, node: str, edge_nats_url: str) -> Settings:
    """An edge's settings: its node id, and a relay writing the node's own stream locally."""
    require_edge_node(node)
    return settings.model_copy(
        update={
            "node_id": node,
            "nats_url": edge_nats_url,
            "stream_name": edge_stream_name(node),
            "subject_prefix": edge_subject_prefix(settings.edge_subject_root, node),
        }
    )


def local_edge_server(
    home: Path, node: str, hub_leaf_url: str, port: int, host: str = "127.0.0.1"
) -> LocalNatsServer:
    """The edge's own nats-server: a leaf of the hub in domain ``edge-<node>``."""
    base = home / "nats"
    return LocalNatsServer(edge_plan(base, node, host, port, hub_leaf_url), base)


def ingest_config(settings: Settings, nodes: list[str] | None = None) -> IngestConfig:
    if not settings.nats_url:
        raise ValueError("the edge ingester reads the hub: set JANUS_NATS_URL")
    chosen = nodes or [n for n in settings.edge_nodes.split(",") if n]
    if not chosen:
        raise ValueError("no edge nodes to ingest: pass --node or set JANUS_EDGE_NODES")
    return IngestConfig(
        hub_url=settings.nats_url,
        hub_stream=settings.edge_hub_stream,
        subject_root=settings.edge_subject_root,
        nodes=[require_edge_node(n) for n in chosen],
        batch_size=settings.edge_ingest_batch_size,
        connect_timeout_seconds=settings.connect_timeout_seconds,
    )


def build_ingester(janus: Janus, nodes: list[str] | None = None) -> EdgeIngester:
    return EdgeIngester(
        janus.app,
        ingest_config(janus.settings, nodes),
        janus.settings.node_id,
        janus.leader_lock("edge-ingest"),
    )


def edge_status(janus: Janus) -> list[EdgeStatus]:
    return edge_statuses(janus.app)


def edge_requests(janus: Janus) -> EdgeRequests:
    return EdgeRequests(janus.commands.runner, janus.clock)


def build_command_consumer(janus: Janus) -> EdgeCommandConsumer:
    """The edge's consumer of the cloud's requests, applying each through the command path."""
    settings = janus.settings
    if not settings.nats_url:
        raise ValueError("an edge reads the cloud's requests through its nats-server")
    requests = edge_requests(janus)
    cloud = Invocation(Actor(ActorKind.NODE, "cloud"))

    def apply(payload: dict[str, Any]) -> str:
        """The outcome; a request that can never apply is refused (logged, acked), while a
        store or concurrency failure raises and the request is delivered again."""
        try:
            command = ApplyEdgeRequest.model_validate(payload)
            return requests.apply(command, cloud).outcome
        except (StoreUnavailable, ConcurrencyConflict):
            raise
        except (ValidationError, CommandError, DomainError) as error:
            log.error("edge: refused a request %s: %s", payload.get("request_id"), error)
            return "refused"

    config = ConsumerConfigEdge(
        edge_url=settings.nats_url,
        root=settings.edge_subject_root,
        node=require_edge_node(settings.node_id),
        connect_timeout_seconds=settings.connect_timeout_seconds,
    )
    return EdgeCommandConsumer(config, apply)


def edge_request_statuses(janus: Janus) -> list[EdgeRequest]:
    return edge_request_list(janus.app)
