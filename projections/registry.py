"""The projections a node runs, by name, how to take one's leader lock, and where they are fed from.

``bootstrap/`` builds the one registry (``Janus.projections``); rebuild/verify and the projector
supervisor take it instead of the container, so they never import the composition root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters.locks import LeaderLock
from event_store.messages import StreamSpec
from projections.runner import ProjectionRunner


@dataclass(frozen=True)
class Projections:
    runners: Mapping[str, ProjectionRunner]
    leader_lock: Callable[[str], LeaderLock]


@dataclass(frozen=True)
class FeedSource:
    """Where projections are fed from: the stream at ``nats_url``, or without it the event log
    (polled every ``poll_interval_seconds``)."""

    nats_url: str | None
    stream: StreamSpec
    poll_interval_seconds: float
