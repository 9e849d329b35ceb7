"""Edge events that would leave a hole in an aggregate's history wait ("park") until it is filled.

After a gap the edge stream's next events may continue aggregates whose earlier events the gap
lost. Appended as they come, the cloud's copy of such an aggregate would miss versions: it could
not be read back, and every projection would see a continuation without its start. So an edge
event is appended only when the cloud holds its aggregate's previous version; otherwise it is
kept in ``janus_edge_parked`` (its id is recorded as held, with position 0, so a redelivery is
a no-op) and counted in the edge status. An import of the edge's own export
(``replay/edge_repair.py``) fills the hole and appends what was parked, in version order, in the
same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from event_store.edge_event import EdgeEvent

if TYPE_CHECKING:  # EdgeSql holds a Parking: only its type is needed here
    from event_store.edge_store import EdgeSql

PARKED_TABLE = "janus_edge_parked"
PARKED = 0  # the position recorded for a held event that is not in the log yet


class EdgeRepairRefused(ValueError):
    """The file cannot be imported as it is; nothing was written."""


@dataclass(frozen=True)
class Repaired:
    written: list[int]  # positions of the file's events new to the cloud
    duplicates: int  # file events the cloud held already (by id, or the same bytes in place)
    released: list[int]  # positions of parked events appended once their holes were filled


def create_statement(sqlite: bool) -> str:
    big, blob = ("INTEGER", "BLOB") if sqlite else ("BIGINT", "BYTEA")
    return (
        f"CREATE TABLE IF NOT EXISTS {{parked}} (event_id TEXT PRIMARY KEY, node TEXT NOT NULL, "
        f"origin_sequence {big} NOT NULL, originator_id TEXT NOT NULL, "
        f"originator_version {big} NOT NULL, topic TEXT NOT NULL, state {blob} NOT NULL)"
    )


class Parking:
    """The parked events of every edge, read and written inside the caller's transaction."""

    def __init__(self, sql: EdgeSql) -> None:
        self.sql = sql

    def in_order(
        self, curs: Any, events: Sequence[EdgeEvent]
    ) -> tuple[list[EdgeEvent], list[EdgeEvent]]:
        """Split new events into those that continue their aggregate and those that must wait.

        A version at or below the cloud's last is left to the append (the log's unique key
        refuses it loudly, as before): only a version past the next one waits.
        """
        last = self.sql.last_versions(curs, list({e.place[0] for e in events}))
        ready: list[EdgeEvent] = []
        waiting: list[EdgeEvent] = []
        for event in events:
            aggregate, version = event.place
            if version > last.get(aggregate, 0) + 1:
                waiting.append(event)
                continue
            last[aggregate] = max(version, last.get(aggregate, 0))
            ready.append(event)
        return ready, waiting

    def park(self, curs: Any, node: str, events: Sequence[EdgeEvent]) -> None:
        if not events:
            return
        q = self.sql._q
        curs.executemany(
            q(
                "INSERT INTO {parked} (event_id, node, origin_sequence, originator_id, "
                "originator_version, topic, state) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    str(e.event_id),
                    node,
                    e.origin_sequence,
                    str(e.place[0]),
                    e.place[1],
                    e.stored.topic,
                    e.stored.state,
                )
                for e in events
            ],
        )
        self.sql.record_ids(curs, node, events, [PARKED] * len(events))

    def parked(self, curs: Any, node: str) -> list[EdgeEvent]:
        """The node's parked events, each aggregate's in version order."""
        curs.execute(
            self.sql._q(
                "SELECT * FROM {parked} WHERE node = ? ORDER BY originator_id, originator_version"
            ),
            (node,),
        )
        return [
            EdgeEvent(
                node=node,
                origin_sequence=int(r["origin_sequence"]),
                event_id=UUID(str(r["event_id"])),
                stored=StoredEvent(
                    UUID(str(r["originator_id"])),
                    int(r["originator_version"]),
                    str(r["topic"]),
                    bytes(r["state"]),
                ),
            )
            for r in curs.fetchall()
        ]

    def counts(self, curs: Any) -> dict[str, int]:
        curs.execute(self.sql._q("SELECT node, COUNT(*) AS n FROM {parked} GROUP BY node"))
        return {str(r["node"]): int(r["n"]) for r in curs.fetchall()}

    def release(self, curs: Any, node: str) -> list[int]:
        """Append every parked event whose aggregate's previous version the log now holds."""
        waiting = self.parked(curs, node)
        if not waiting:
            return []
        last = self.sql.last_versions(curs, list({e.place[0] for e in waiting}))
        ready: list[EdgeEvent] = []
        for event in waiting:  # each aggregate's in version order: a contiguous run goes
            aggregate, version = event.place
            if version == last.get(aggregate, 0) + 1:
                ready.append(event)
                last[aggregate] = version
        return self.unpark(curs, sorted(ready, key=lambda e: e.origin_sequence))

    def unpark(self, curs: Any, events: Sequence[EdgeEvent]) -> list[int]:
        """Move parked events into the log, in the given order; their positions."""
        if not events:
            return []
        positions = self.sql.insert_log(curs, events)
        self._moved(curs, list(zip(events, positions, strict=True)))
        return positions

    def repair(self, curs: Any, node: str, events: Sequence[EdgeEvent]) -> Repaired:
        """Append the export's events the cloud lacks, in the file's (the edge's) order, parked
        ones at their turn; then whatever else they unblock. Refused whole, never in part."""
        held = self.sql.held_positions(curs, [e.event_id for e in events])
        fresh = [e for e in events if e.event_id not in held]
        places = self.sql.existing(curs, [e.place for e in fresh])
        duplicates = sum(1 for p in held.values() if p != PARKED)
        last = self.sql.last_versions(curs, list({e.place[0] for e in events}))
        order: list[EdgeEvent] = []
        unparked: set[UUID] = set()
        for event in events:
            aggregate, version = event.place
            at = held.get(event.event_id)
            if at is not None and at != PARKED:
                continue  # in the log already
            there = places.get(event.place)
            if at is None and there is not None:
                if there[1] != event.stored.state:
                    raise EdgeRepairRefused(
                        f"event {event.event_id}: the cloud holds another event at aggregate "
                        f"{aggregate} version {version} (a conflict, recorded by the ingester)"
                    )
                duplicates += 1  # the same bytes, brought by an earlier `events import`
                continue
            if version != last.get(aggregate, 0) + 1:
                raise EdgeRepairRefused(
                    f"event {event.event_id}: aggregate {aggregate} version {version} does not "
                    f"follow the cloud's version {last.get(aggregate, 0)}: export the edge's log "
                    "from an earlier position"
                )
            last[aggregate] = version
            order.append(event)
            if at == PARKED:
                unparked.add(event.event_id)
        positions = self.sql.insert_log(curs, order) if order else []
        new = list(zip(order, positions, strict=True))
        imported = [(e, p) for e, p in new if e.event_id not in unparked]
        moved = [(e, p) for e, p in new if e.event_id in unparked]
        # New ids from the file are held with origin sequence 0: they came by import.
        self.sql.record_ids(
            curs,
            node,
            [EdgeEvent(node, 0, e.event_id, e.stored) for e, _ in imported],
            [p for _, p in imported],
        )
        self._moved(curs, moved)
        released = self.release(curs, node)
        return Repaired(
            [p for _, p in imported], duplicates, sorted([*(p for _, p in moved), *released])
        )

    def _moved(self, curs: Any, moved: Sequence[tuple[EdgeEvent, int]]) -> None:
        """Parked events now in the log: their positions recorded, out of the parked table."""
        if not moved:
            return
        q = self.sql._q
        curs.executemany(
            q("UPDATE {edge_events} SET position = ? WHERE event_id = ?"),
            [(p, str(e.event_id)) for e, p in moved],
        )
        curs.executemany(
            q("DELETE FROM {parked} WHERE event_id = ?"), [(str(e.event_id),) for e, _ in moved]
        )
