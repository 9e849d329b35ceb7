"""The cloud side of edge sync, in SQL: append edge events idempotently with a per-edge cursor.

One transaction per batch takes the same lock every append takes (Postgres ``LOCK TABLE ... IN
EXCLUSIVE MODE``; SQLite ``BEGIN IMMEDIATE``), appends the edge events at the next positions,
records each event id with its origin node and sequence (the primary key makes a repeat a no-op
in any order) and moves the edge's cursor. The cursor and the events can never disagree: both
commit together or neither does. An event that would leave a hole in its aggregate's history
(after a gap) is parked instead (event_store/edge_parking.py). The same transaction records how
far into the hub stream the ingester has appended (``HubPosition``): its consumer resumes from
there, so the hub keeps no delivery state for it (event_store/edge_feed.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from event_store.application import JanusApplication
from event_store.bulk_sql import EventsSql
from event_store.edge_event import EdgeEvent
from event_store.edge_parking import PARKED_TABLE, Parking, Repaired, create_statement

__all__ = ["Appended", "EdgeCursor", "EdgeEvent", "EdgeSql", "HubPosition", "Repaired"]

EVENTS_TABLE = "janus_edge_events"
CURSORS_TABLE = "janus_edge_cursors"
HUB_TABLE = "janus_edge_hub_positions"


@dataclass(frozen=True)
class HubPosition:
    """The hub stream's sequence of the last message appended, and which stream that was
    (its ``created`` time: a stream re-created under the same name starts over at 1)."""

    stream: str
    created: str | None
    sequence: int


@dataclass(frozen=True)
class EdgeCursor:
    node: str
    origin_sequence: int
    stream_created: str | None
    last_event_at: datetime | None
    origin_first_sequence: int | None
    origin_last_sequence: int | None
    link: str
    last_contact: datetime | None


@dataclass(frozen=True)
class Appended:
    positions: list[int]
    duplicates: int
    parked: int = 0


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_BY_APP: weakref.WeakKeyDictionary[JanusApplication, EdgeSql] = weakref.WeakKeyDictionary()


class EdgeSql(EventsSql):
    """Edge tables beside the events table, written through the recorder's own connections
    (the transactions and the append lock are the bulk writer's: event_store/bulk_sql.py)."""

    def __init__(self, app: JanusApplication) -> None:
        super().__init__(app)
        self.mark = "?" if self.sqlite else "%s"
        self._ready = False
        self.parking = Parking(self)

    @classmethod
    def of(cls, app: JanusApplication) -> EdgeSql:
        """One per application: the tables are created once per process, not on every lookup
        (the executor and the command service ask for each grant from another node)."""
        found = _BY_APP.get(app)
        if found is None:
            found = _BY_APP.setdefault(app, cls(app))
        return found

    # -- plumbing -------------------------------------------------------------------------------

    def _q(self, text: str) -> Any:
        """``{events}``, ``{edge_events}``, ``{cursors}``, ``{parked}`` named per backend; ``?``
        placeholders."""
        if self.sqlite:
            return text.format(
                events=self.table,
                edge_events=EVENTS_TABLE,
                cursors=CURSORS_TABLE,
                parked=PARKED_TABLE,
                hub=HUB_TABLE,
            )
        schema = self.recorder.datastore.schema
        return SQL(text.replace("?", "%s")).format(  # type: ignore[arg-type, unused-ignore]
            events=Identifier(schema, self.table),
            edge_events=Identifier(schema, EVENTS_TABLE),
            cursors=Identifier(schema, CURSORS_TABLE),
            parked=Identifier(schema, PARKED_TABLE),
            hub=Identifier(schema, HUB_TABLE),
        )

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        self.setup()
        with self.reading() as curs:
            yield curs

    @contextmanager
    def _writing(self, *, append_lock: bool = True) -> Iterator[Any]:
        """Only appends need the append lock; cursor bookkeeping takes SQLite's write lock anyway
        and on Postgres must not stall the log's writers every probe."""
        with self.writing(append_lock=append_lock) as curs:
            yield curs

    def setup(self) -> None:
        if self._ready:
            return
        big = "INTEGER" if self.sqlite else "BIGINT"
        statements = [
            f"CREATE TABLE IF NOT EXISTS {{edge_events}} (event_id TEXT PRIMARY KEY, "
            f"node TEXT NOT NULL, origin_sequence {big} NOT NULL, position {big} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {{cursors}} (node TEXT PRIMARY KEY, "
            f"origin_sequence {big} NOT NULL, stream_created TEXT, last_event_at TEXT, "
            f"origin_first_sequence {big}, origin_last_sequence {big}, "
            "link TEXT NOT NULL, last_contact TEXT)",
            create_statement(self.sqlite),
            f"CREATE TABLE IF NOT EXISTS {{hub}} (stream TEXT PRIMARY KEY, "
            f"created TEXT, sequence {big} NOT NULL)",
        ]
        with self.recorder.datastore.transaction(commit=True) as curs:
            for statement in statements:
                curs.execute(self._q(statement))
        self._ready = True

    # -- reads ----------------------------------------------------------------------------------

    def cursors(self) -> list[EdgeCursor]:
        with self._reading() as curs:
            curs.execute(self._q("SELECT * FROM {cursors} ORDER BY node"))
            return [self._cursor(row) for row in curs.fetchall()]

    def cursor(self, node: str) -> EdgeCursor | None:
        with self._reading() as curs:
            curs.execute(self._q("SELECT * FROM {cursors} WHERE node = ?"), (node,))
            row = curs.fetchone()
        return None if row is None else self._cursor(row)

    @staticmethod
    def _cursor(row: Any) -> EdgeCursor:
        return EdgeCursor(
            node=str(row["node"]),
            origin_sequence=int(row["origin_sequence"]),
            stream_created=row["stream_created"],
            last_event_at=_when(row["last_event_at"]),
            origin_first_sequence=row["origin_first_sequence"],
            origin_last_sequence=row["origin_last_sequence"],
            link=str(row["link"]),
            last_contact=_when(row["last_contact"]),
        )

    def hub_position(self, stream: str) -> HubPosition | None:
        with self._reading() as curs:
            curs.execute(self._q("SELECT * FROM {hub} WHERE stream = ?"), (stream,))
            row = curs.fetchone()
        if row is None:
            return None
        return HubPosition(str(row["stream"]), row["created"], int(row["sequence"]))

    def known(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these edge event ids the cloud already holds."""
        with self._reading() as curs:
            return self._known_in(curs, event_ids)

    def _known_in(self, curs: Any, event_ids: Sequence[UUID]) -> set[UUID]:
        return set(self.held_positions(curs, event_ids))

    def held_positions(self, curs: Any, event_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Which of these edge event ids the cloud holds, at which position (0: parked)."""
        if not event_ids:
            return {}
        if not self.sqlite:  # one statement whatever the count: parsed once, not per size
            curs.execute(
                self._q(
                    "SELECT event_id, position FROM {edge_events} WHERE event_id = ANY(?::text[])"
                ),
                ([str(e) for e in event_ids],),
            )
            return {UUID(str(r["event_id"])): int(r["position"]) for r in curs.fetchall()}
        found: dict[UUID, int] = {}
        for start in range(0, len(event_ids), 400):  # under SQLite's parameter limit
            chunk = [str(e) for e in event_ids[start : start + 400]]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT event_id, position FROM {{edge_events}} WHERE event_id IN ({marks})"
            curs.execute(self._q(query), chunk)
            found.update({UUID(str(r["event_id"])): int(r["position"]) for r in curs.fetchall()})
        return found

    def taken(self, keys: Sequence[tuple[UUID, int]]) -> dict[tuple[UUID, int], bytes]:
        """The stored bytes at each (aggregate, version) place the cloud's log has filled."""
        if not keys:
            return {}
        with self._reading() as curs:
            return {key: state for key, (_, state) in self.existing(curs, keys).items()}

    # -- writes ---------------------------------------------------------------------------------

    def append(
        self,
        node: str,
        events: Sequence[EdgeEvent],
        skip: set[UUID],
        last_event_at: datetime,
        hub: HubPosition | None = None,
    ) -> Appended:
        """Append ``events`` (minus known ids and ``skip``) and move ``node``'s cursor past them
        (and the hub position to ``hub``, when given).

        Everything happens in one transaction under the append lock; an event id already held
        is left alone, so a redelivered batch changes nothing but (never backwards) the cursor.
        """
        if not events:
            return Appended([], 0)
        self.setup()
        duplicates = 0
        with self._writing() as curs:
            held = self._known_in(curs, [e.event_id for e in events])
            fresh: list[EdgeEvent] = []
            for event in events:
                if event.event_id in skip or event.event_id in held:
                    duplicates += event.event_id not in skip
                    continue
                held.add(event.event_id)  # a repeat within the batch is a duplicate too
                fresh.append(event)
            fresh, waiting = self.parking.in_order(curs, fresh)
            self.parking.park(curs, node, waiting)
            positions = self._insert(curs, node, fresh)
            self._advance(curs, node, max(e.origin_sequence for e in events), last_event_at)
            if hub is not None:
                self._advance_hub(curs, hub)
            if positions and not self.sqlite:
                curs.execute(SQL("NOTIFY {0}").format(Identifier(self.recorder.channel_name)))
        return Appended(positions, duplicates, len(waiting))

    def repair(self, node: str, events: Sequence[EdgeEvent]) -> Repaired:
        """Import the edge's own export (``events``, in its log order): one transaction under
        the append lock; refused whole (``EdgeRepairRefused``) if any event cannot go in."""
        self.setup()
        with self._writing() as curs:
            repaired = self.parking.repair(curs, node, events)
            if (repaired.written or repaired.released) and not self.sqlite:
                curs.execute(SQL("NOTIFY {0}").format(Identifier(self.recorder.channel_name)))
        return repaired

    def parked_counts(self) -> dict[str, int]:
        """How many events wait for a hole to be filled, per edge."""
        with self._reading() as curs:
            return self.parking.counts(curs)

    def event_at(self, node: str, origin_sequence: int) -> UUID | None:
        """The id of the edge event that arrived at this origin sequence (None: none did)."""
        with self._reading() as curs:
            curs.execute(
                self._q(
                    "SELECT event_id FROM {edge_events} WHERE node = ? AND origin_sequence = ?"
                ),
                (node, origin_sequence),
            )
            rows = curs.fetchall()
        return UUID(str(rows[0]["event_id"])) if len(rows) == 1 else None

    def _insert(self, curs: Any, node: str, fresh: Sequence[EdgeEvent]) -> list[int]:
        """Append at the next positions, in order, each with its origin; their positions.

        A statement per table per batch, not per event: that was most of a catch-up's time.
        """
        if not fresh:
            return []
        positions = self.insert_log(curs, fresh)
        self.record_ids(curs, node, fresh, positions)
        return positions

    def insert_log(self, curs: Any, events: Sequence[EdgeEvent]) -> list[int]:
        """The events into the log at the next positions, in order; their positions."""
        if self.sqlite:
            # Under the write lock the next positions are the head's successors, exactly the
            # rowids SQLite would pick itself (a rowid table without AUTOINCREMENT).
            head = self.head(curs)
            positions = list(range(head + 1, head + 1 + len(events)))
            self.insert(curs, [(p, e.stored) for p, e in zip(positions, events, strict=True)])
            return positions
        # Rows take their positions in the arrays' order (as the recorder's own append does);
        # each position is still matched back by place rather than trusted by order.
        curs.execute(
            self._q(
                "INSERT INTO {events} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %t::text[], %b::bytea[]) "
                "RETURNING originator_id AS i, originator_version AS v, notification_id AS n"
            ),
            (
                [e.place[0] for e in events],
                [e.place[1] for e in events],
                [e.stored.topic for e in events],
                [e.stored.state for e in events],
            ),
        )
        at = {(r["i"], int(r["v"])): int(r["n"]) for r in curs.fetchall()}
        return [at[e.place] for e in events]

    def record_ids(
        self, curs: Any, node: str, events: Sequence[EdgeEvent], positions: Sequence[int]
    ) -> None:
        """Each event id as held, with its origin and position (0: parked, not in the log)."""
        if self.sqlite:
            curs.executemany(
                self._q(
                    "INSERT INTO {edge_events} (event_id, node, origin_sequence, position) "
                    "VALUES (?, ?, ?, ?)"
                ),
                [
                    (str(e.event_id), node, e.origin_sequence, p)
                    for e, p in zip(events, positions, strict=True)
                ],
            )
            return
        curs.execute(
            self._q(
                "INSERT INTO {edge_events} (event_id, node, origin_sequence, position) "
                "SELECT e, %t, s, p FROM unnest(%t::text[], %b::bigint[], %b::bigint[]) "
                "AS k(e, s, p)"
            ),
            (
                node,
                [str(e.event_id) for e in events],
                [e.origin_sequence for e in events],
                list(positions),
            ),
        )

    def _advance(self, curs: Any, node: str, sequence: int, last_event_at: datetime) -> None:
        """Move the cursor forward (never back), creating it on an edge's first batch."""
        curs.execute(
            self._q(
                "INSERT INTO {cursors} AS c (node, origin_sequence, last_event_at, link) "
                "VALUES (?, ?, ?, 'unknown') ON CONFLICT (node) DO UPDATE SET "
                "origin_sequence = excluded.origin_sequence, "
                "last_event_at = excluded.last_event_at "
                "WHERE c.origin_sequence < excluded.origin_sequence"
            ),
            (node, sequence, last_event_at.isoformat()),
        )

    def _advance_hub(self, curs: Any, hub: HubPosition) -> None:
        """Forward only within one stream; a stream of another ``created`` starts over."""
        curs.execute(
            self._q(
                "INSERT INTO {hub} AS h (stream, created, sequence) VALUES (?, ?, ?) "
                "ON CONFLICT (stream) DO UPDATE SET created = excluded.created, "
                "sequence = excluded.sequence WHERE h.sequence < excluded.sequence "
                "OR COALESCE(h.created, '') <> COALESCE(excluded.created, '')"
            ),
            (hub.stream, hub.created, hub.sequence),
        )

    def observe(
        self,
        node: str,
        *,
        link: str,
        stream_created: str | None = None,
        first_sequence: int | None = None,
        last_sequence: int | None = None,
    ) -> None:
        """What the ingester last saw of the edge's stream (link up) or that it could not (down)."""
        self.setup()
        now = datetime.now(UTC).isoformat()
        with self._writing(append_lock=False) as curs:
            curs.execute(self._q("SELECT 1 AS x FROM {cursors} WHERE node = ?"), (node,))
            if curs.fetchone() is None:
                curs.execute(
                    self._q("INSERT INTO {cursors} (node, origin_sequence, link) VALUES (?, 0, ?)"),
                    (node, link),
                )
            if link != "up":
                curs.execute(self._q("UPDATE {cursors} SET link = ? WHERE node = ?"), (link, node))
                return
            curs.execute(
                self._q(
                    "UPDATE {cursors} SET link = ?, last_contact = ?, stream_created = "
                    "COALESCE(?, stream_created), origin_first_sequence = ?, "
                    "origin_last_sequence = ? WHERE node = ?"
                ),
                (link, now, stream_created, first_sequence, last_sequence, node),
            )

    def reset_identity(self, node: str, stream_created: str) -> None:
        """A re-created origin stream starts its sequences over: so does the cursor (recorded)."""
        with self._writing(append_lock=False) as curs:
            curs.execute(
                self._q(
                    "UPDATE {cursors} SET stream_created = ?, origin_sequence = 0 WHERE node = ?"
                ),
                (stream_created, node),
            )
