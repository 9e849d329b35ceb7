"""The parts of a node the API uses, each named by what it is. ``bootstrap/api.py`` builds them.

The API never receives the container: it gets these, so what a route may reach is written here
and which implementation stands behind each part is bootstrap's choice alone. A part the API
builds on first use (the documents' write path, a scheduler that only fires) comes as a factory,
so a request that never needs it opens nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from adapters.blobs import BlobStore
from adapters.clock import Clock
from adapters.graph import GraphStore
from commands.agent_commands import AgentCommands
from commands.edge_requests import EdgeRequests
from commands.ingest import DocumentIngest
from commands.keys import KeyService
from commands.scheduler import Scheduler
from commands.service import CommandService
from domain.edge_requests import EdgeRequest
from event_store.edge_sync import EdgeStatus
from event_store.reader import NotificationReader
from event_store.relay.status import RelayStatus
from projections.document_views import ViewStatusReader
from projections.hybrid import HybridSearch
from projections.registry import Runner
from projections.search import VectorSearch


class Runtime(Protocol):
    """The in-process runtime (views, executor, expiry, scheduler) when the API hosts one."""

    ready: threading.Event

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler this process runs while it holds the scheduler's lock, else None."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class NodeFacts:
    """What the API reads of the node's settings, as values."""

    node_id: str
    embedded: bool  # the embedded store: the one case where authentication may be off
    nats_configured: bool  # a relay feeds NATS (its status is part of readiness)
    agent_enabled: bool
    ingest_max_bytes: int


@dataclass(frozen=True)
class Knowledge:
    """The knowledge views (object, vector, graph) and the searches over them."""

    views: Mapping[str, Runner]
    vector_search: Callable[[], VectorSearch]
    hybrid_search: Callable[[], HybridSearch]
    graph: Callable[[], GraphStore]


@dataclass(frozen=True)
class Statuses:
    """How the node's other roles are doing, read from where those roles report."""

    executor_running: Callable[[], bool | None]  # None: could not tell
    no_executor: str  # what to tell a caller when no executor runs (how to start one)
    agent: Callable[[], dict[str, Any]]
    relay: Callable[[], RelayStatus]
    edges: Callable[[], list[EdgeStatus]]
    edge_requests: Callable[[], list[EdgeRequest]]  # sent by this node, as each now stands


@dataclass(frozen=True)
class ApiParts:
    commands: CommandService
    keys: KeyService
    agent_commands: AgentCommands  # an operator's answer to the agent's question
    edge_requests: EdgeRequests  # a cloud operator's grant / deny for an edge to apply
    reader: NotificationReader  # the log: its head, its pages, the event stream
    views_engine: Engine  # the relational views and the role board
    responses_engine: Engine  # where kept responses of idempotent requests live
    clock: Clock
    relational: Runner  # the relational view a read with ?min_position waits on
    projections: list[Runner]  # every registered projection, for /readyz and /v1/projections
    knowledge: Knowledge
    scheduler: Callable[[], Scheduler]  # one that only fires, for a node not running its own
    documents: Callable[[], DocumentIngest]
    document_views: Callable[[BlobStore], dict[str, ViewStatusReader]]
    statuses: Statuses
    node: NodeFacts
    # Releases what was built for this API alone (its responses pool), on the app's shutdown.
    release: Callable[[], None]
