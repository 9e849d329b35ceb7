"""The projections a node runs, by name, how to take one's leader lock, and where they are fed from.

``bootstrap/`` builds the one registry (``Janus.projections``); rebuild/verify and the projector
supervisor take it instead of the container, so they never import the composition root.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Notification
from sqlalchemy.engine import Engine

from adapters.locks import LeaderLock
from event_store.messages import StreamSpec
from event_store.reader import NotificationReader
from projections.feed_loop import Applied
from projections.status import ProjectionStatus


class TargetUnavailable(Exception):
    """A projection's target store (object store, vector index, graph) cannot be reached or is
    held by another process: retried like an unreachable database, never a stalled view."""


class Runner(Protocol):
    """What runs one projection from the log or a feed, whatever its target store.

    ``ProjectionRunner`` (SQL views, one transaction per batch) and ``KnowledgeRunner`` (object,
    vector and graph views, idempotent writes then the position; projections/knowledge.py) both
    satisfy it; the supervisor, the JetStream feed and the status commands need nothing more.
    """

    name: str
    reader: NotificationReader
    engine: Engine  # where the runner reports its state (and a feed its status)

    @property
    def projection(self) -> Any:
        """What is projected: has ``name`` and ``version`` (the JetStream consumer's name)."""

    @property
    def position(self) -> int: ...

    def setup(self) -> None: ...

    def status(self) -> ProjectionStatus: ...

    def run_once(self) -> int: ...

    def apply(self, batch: Sequence[Notification]) -> Applied: ...

    def apply_batch(self, batch: Sequence[Notification]) -> int: ...

    def catch_up(self, timeout: float = 60.0) -> int: ...

    def wait_for(self, position: int, timeout: float = 10.0) -> None: ...

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.5) -> None: ...

    def retry(self) -> None: ...

    def skip(self, position: int) -> None:
        """Step over the stalled event at ``position``; ValueError when that cannot be done."""


@dataclass(frozen=True)
class Projections:
    runners: Mapping[str, Runner]
    leader_lock: Callable[[str], LeaderLock]


@dataclass(frozen=True)
class FeedSource:
    """Where projections are fed from: the stream at ``nats_url``, or without it the event log
    (polled every ``poll_interval_seconds``)."""

    nats_url: str | None
    stream: StreamSpec
    poll_interval_seconds: float
