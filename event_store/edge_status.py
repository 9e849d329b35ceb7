"""Each edge as the cloud sees it: how far its events have arrived, the link, what went wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domain.edge import EdgeSync, edge_sync_id
from event_store.application import JanusApplication
from event_store.edge_store import EdgeCursor, EdgeSql

# A link reported "up" longer ago than this is shown as "stale": no ingester is probing it.
STALE_SECONDS = 30.0


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeStatus:
    node: str
    origin_sequence: int
    lag_events: int | None
    lag_seconds: float | None
    link: str
    last_contact: datetime | None
    gaps: list[dict[str, object]]
    conflicts: list[dict[str, object]]
    parked: int = 0  # events held back until a gap's repair fills their aggregate's history


def edge_statuses(app: JanusApplication, now: datetime | None = None) -> list[EdgeStatus]:
    """Every edge the cloud has heard of, with what it lacks and what went wrong."""
    now = now or datetime.now(UTC)
    sql = EdgeSql.of(app)
    parked = sql.parked_counts()
    return [_status(app, cursor, now, parked.get(cursor.node, 0)) for cursor in sql.cursors()]


def _link(cursor: EdgeCursor, now: datetime) -> str:
    """As the ingester last saw it; "stale" when no ingester has looked for a while."""
    contact = cursor.last_contact
    if cursor.link == "up" and (contact is None or (now - contact).total_seconds() > STALE_SECONDS):
        return "stale"
    return cursor.link


def _status(app: JanusApplication, cursor: EdgeCursor, now: datetime, parked: int) -> EdgeStatus:
    gaps: list[dict[str, object]] = []
    conflicts: list[dict[str, object]] = []
    ident = edge_sync_id(cursor.node)
    if ident in app.repository:
        sync: EdgeSync = app.repository.get(ident)
        gaps, conflicts = list(sync.gaps), list(sync.conflicts)
    lag = None
    if cursor.origin_last_sequence is not None:
        lag = max(0, cursor.origin_last_sequence - cursor.origin_sequence)
    lag_seconds = None
    if lag is not None and cursor.last_event_at is not None:
        lag_seconds = (now - cursor.last_event_at).total_seconds() if lag else 0.0
    return EdgeStatus(
        node=cursor.node,
        origin_sequence=cursor.origin_sequence,
        lag_events=lag,
        lag_seconds=lag_seconds,
        link=_link(cursor, now),
        last_contact=cursor.last_contact,
        gaps=gaps,
        conflicts=conflicts,
        parked=parked,
    )
