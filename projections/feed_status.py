"""What a projection feed last reported: its state and counters, kept beside the views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Engine

from event_store.heartbeat import aware, is_alive, read_status_row

# How often a feed rewrites its row when nothing changes, to show it is alive (FeedConfig).
DEFAULT_HEARTBEAT = 5.0

# Beside the views, so any process (``janus project status``) sees what a feed last reported.
status_metadata = MetaData()

feed_status_table = Table(
    "projection_feed_status",
    status_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("projection", String(100), nullable=False),
    Column("state", String(20), nullable=False),
    Column("error", Text),
    Column("next_sequence", BigInteger),
    Column("resubscribes", Integer, nullable=False),
    Column("connects", Integer, nullable=False),
    Column("redeliveries", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class FeedState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass(frozen=True)
class FeedStatus:
    consumer: str
    state: FeedState
    error: str | None
    next_sequence: int | None
    resubscribes: int
    connects: int
    # Deliveries the server made again (an ack lost or later than ack_wait): harmless, but many
    # of them mean ack_wait is too short for a batch.
    redeliveries: int = 0
    updated_at: datetime | None = None


def read_feed_status(
    engine: Engine, consumer: str, heartbeat: float = DEFAULT_HEARTBEAT
) -> FeedStatus | None:
    """What the feed of ``consumer`` last reported, as any process sees it; None if it never ran.

    A report older than a few heartbeats means no feed is running (it was killed): ``stopped``.
    """
    row = read_status_row(engine, feed_status_table, consumer)
    if row is None:
        return None
    updated_at = aware(row.updated_at)
    alive = is_alive(updated_at, heartbeat)
    state = FeedState(row.state) if alive else FeedState.STOPPED
    return FeedStatus(
        consumer,
        state,
        row.error,
        row.next_sequence,
        row.resubscribes,
        row.connects,
        row.redeliveries,
        updated_at,
    )
