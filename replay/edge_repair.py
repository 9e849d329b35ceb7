"""Repair an edge's gap in the cloud: import the edge's own export (``janus edge import``).

A gap means the hub never saw some of the edge's events (its stream dropped them, or was
re-created). The edge still holds them in its log: ``janus events export`` there, then this import
here. The file is read and checked whole (``replay/exchange_file.py``: checksums, chained
positions, contiguous versions, trailer, signature), every event must be the edge's own, and then
one transaction appends what the cloud lacks in the edge's order, moves the events that waited
for those (event_store/edge_parking.py) into the log after them, and records the ids as held, so
a later delivery over the hub is a no-op. Refused whole, never in part.

A gap is recorded closed (``EdgeSync.GapRepaired``) only when the file proves it: it holds the
events on both sides of a retention gap (the one before it, or the edge log's start, and the one
the hub delivered after it), so its chained positions cover everything between; a re-created
stream's gap needs a whole-log export taken after the gap was seen. The file is held in memory
while it is checked (a repair, not a bulk load).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from domain.edge import EdgeSync, edge_sync_id, require_edge_node
from domain.errors import InvalidValue
from domain.meta import Actor, CommandContext
from event_store.edge_event import EdgeEvent
from event_store.edge_parking import EdgeRepairRefused
from event_store.edge_store import EdgeSql
from replay.exchange_file import ExchangeError, FileReader, Header, signing_key
from replay.store import ProgressFn, Store, no_progress


@dataclass
class EdgeImport:
    node: str
    events: int
    sha256: str
    signature: str
    written: int = 0
    duplicates: int = 0
    released: int = 0
    closed: list[dict[str, Any]] = field(default_factory=list)
    still_open: list[dict[str, Any]] = field(default_factory=list)
    parked: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "events": self.events,
            "sha256": self.sha256,
            "signature": self.signature,
            "written": self.written,
            "already_present": self.duplicates,
            "released": self.released,
            "gaps_closed": self.closed,
            "gaps_open": self.still_open,
            "parked": self.parked,
        }


def import_edge_export(
    store: Store,
    path: Path,
    actor: Actor,
    progress: ProgressFn = no_progress,
    require_signature: bool = False,
) -> EdgeImport:
    """Import an edge's export into this (cloud) store and close the gaps it proves closed."""
    reader = FileReader(store, path, signing_key(store))
    events, header = _read(store, reader, progress)
    if require_signature and not reader.signed:
        raise ExchangeError(f"{path}: {reader.note}; --require-signature refuses it")
    node = header.source_node
    sql = EdgeSql.of(store.app)
    try:
        repaired = sql.repair(node, events)
    except EdgeRepairRefused as error:
        raise ExchangeError(f"nothing was imported: {error}") from None
    result = EdgeImport(
        node,
        len(events),
        reader.sha256,
        reader.note,
        written=len(repaired.written),
        duplicates=repaired.duplicates,
        released=len(repaired.released),
    )
    ids = {e.event_id for e in events}
    result.closed, result.still_open = _close_gaps(store, sql, header, ids, result, actor)
    result.parked = sql.parked_counts().get(node, 0)
    return result


def _read(store: Store, reader: FileReader, progress: ProgressFn) -> tuple[list[EdgeEvent], Header]:
    """Every event of the file, checked; each must be the header's edge node's own."""
    events: list[EdgeEvent] = []
    node: str | None = None
    for line in reader.lines():
        if node is None:
            assert reader.header is not None
            node = _edge_node(store, reader.header)
        decoded: Any = store.app.mapper.to_domain_event(line.stored)
        made_by = decoded.meta.node_id
        if made_by != node:
            raise ExchangeError(
                f"the event was made by node {made_by!r}, not by edge {node!r}: an edge "
                "import takes only the edge's own events",
                line.number,
            )
        events.append(EdgeEvent(node, 0, UUID(line.event_id), line.stored))
        progress(1)
    if reader.header is None:
        raise ExchangeError(f"{reader.path} is empty")
    return events, reader.header


def _edge_node(store: Store, header: Header) -> str:
    node = header.source_node
    try:
        require_edge_node(node)
    except InvalidValue as error:
        raise ExchangeError(f"the file's source node is not an edge: {error}", 1) from None
    if node == store.settings.node_id:
        raise ExchangeError(
            f"the file was exported by this node ({node!r}): `janus events import` restores "
            "a node's own log; `janus edge import` takes an edge's",
            1,
        )
    return node


def _close_gaps(
    store: Store,
    sql: EdgeSql,
    header: Header,
    ids: set[UUID],
    result: EdgeImport,
    actor: Actor,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Record each open gap the file proves filled; the gaps closed and those still open."""
    node = header.source_node
    ident = edge_sync_id(node)
    if ident not in store.app.repository:
        return [], []
    sync: EdgeSync = store.app.repository.get(ident)
    closed: list[dict[str, Any]] = []
    for gap in list(sync.open_gaps):
        if not _proven(sql, node, gap, header, ids):
            continue
        expected, found = int(gap["expected"]), int(gap["found"])
        ctx = CommandContext(
            command_id=f"edge-repair:{node}:{expected}:{found}:{result.sha256}",
            correlation_id=f"edge-sync:{node}",
            causation_id=f"edge-sync:{node}",
            actor=actor,
            node_id=store.settings.node_id,
        )
        if sync.repair_gap(expected, found, result.sha256, result.written, ctx):
            store.app.save(sync)
        closed.append({"expected": expected, "found": found, "reason": gap["reason"]})
    still_open = [{k: g[k] for k in ("expected", "found", "reason")} for g in sync.open_gaps]
    return closed, still_open


def _proven(sql: EdgeSql, node: str, gap: dict[str, Any], header: Header, ids: set[UUID]) -> bool:
    """The file holds the whole gap: positions are chained, so holding both ends suffices."""
    if header.format < 2:
        return False  # an unchained file could lack a line between them unnoticed
    if gap["reason"] != "retention":
        # Sequences started over: only a whole-log export taken after the gap was seen shows
        # that nothing the old stream held is missing.
        exported = datetime.fromisoformat(header.exported_at)
        return header.after_position == 0 and exported > datetime.fromisoformat(str(gap["at"]))
    expected, found = int(gap["expected"]), int(gap["found"])
    after = sql.event_at(node, found)
    if after is None or after not in ids:
        return False
    if expected == 1:
        return header.after_position == 0
    before = sql.event_at(node, expected - 1)
    return before is not None and before in ids
