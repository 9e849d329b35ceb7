"""The few statements a bulk write (an import) needs that the recorders lack, SQLite and Postgres.

Batched lookups (which of these (aggregate, version) pairs the store holds, and each aggregate's
last version), and an all-or-nothing write: one transaction that takes the same lock every
append takes (Postgres: ``LOCK TABLE ... IN EXCLUSIVE MODE``; SQLite: ``BEGIN IMMEDIATE``, the
database's one write lock), inserts the events at the positions the import chose, moves the
position sequence past them and commits once. Until that commit no reader sees any of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from event_store.application import JanusApplication

Key = tuple[UUID, int]


class EventsSql:
    """Statements on the events table through a cursor the caller owns."""

    def __init__(self, app: JanusApplication) -> None:
        recorder: Any = app.recorder
        self.recorder = recorder
        self.sqlite = isinstance(recorder, SQLiteApplicationRecorder)
        if not self.sqlite and not isinstance(recorder, PostgresApplicationRecorder):
            raise TypeError(f"no bulk statements for {type(recorder).__name__}")
        self.table = recorder.events_table_name

    def _id(self, ident: UUID) -> Any:
        return ident.hex if self.sqlite else ident

    def _pg(self, text: str) -> Any:
        return SQL(text).format(  # type: ignore[arg-type, unused-ignore]
            table=Identifier(self.recorder.datastore.schema, self.table)
        )

    @contextmanager
    def reading(self) -> Iterator[Any]:
        if self.sqlite:
            with self.recorder.datastore.transaction(commit=False) as curs:
                yield curs
            return
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            yield curs

    @contextmanager
    def writing(self, *, append_lock: bool = True) -> Iterator[Any]:
        """One transaction holding the append lock (unless told not to: bookkeeping beside the
        log that must not stall its writers); commits only if the block finishes. SQLite's
        transaction is its one write lock either way."""
        if self.sqlite:
            with self.recorder.datastore.get_connection(commit=True) as conn:
                try:
                    curs = conn.cursor()
                    curs.execute("BEGIN IMMEDIATE")
                    try:
                        yield curs
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
                except sqlite3.IntegrityError as error:
                    raise IntegrityError(str(error)) from error
                except sqlite3.Error as error:  # e.g. "database is locked": the store's word
                    raise OperationalError(str(error)) from error
            return
        with self.recorder.datastore.transaction(commit=True) as curs:
            # As every append does: a stuck writer gives a clear error, not a hang.
            timeout = int(self.recorder.datastore.lock_timeout)
            curs.execute(SQL("SET LOCAL lock_timeout = '{0}s'").format(SQL(str(timeout))))
            if append_lock:
                curs.execute(self._pg("LOCK TABLE {table} IN EXCLUSIVE MODE"))
            yield curs

    def head(self, curs: Any) -> int:
        if self.sqlite:
            curs.execute(f"SELECT MAX(rowid) AS h FROM {self.table}")
        else:
            curs.execute(self._pg("SELECT MAX(notification_id) AS h FROM {table}"))
        row = curs.fetchone()
        return int(row["h"] or 0) if row is not None else 0

    def existing(self, curs: Any, keys: Sequence[Key]) -> dict[Key, tuple[str, bytes]]:
        """The (topic, body) the store holds at each of these (aggregate, version) pairs."""
        if not keys:
            return {}
        if self.sqlite:
            found: dict[Key, tuple[str, bytes]] = {}
            for start in range(0, len(keys), 400):  # under SQLite's parameter limit
                chunk = keys[start : start + 400]
                values = ",".join("(?,?)" for _ in chunk)
                # The keys drive the join (CROSS JOIN fixes that order): one primary-key search
                # each. ``(id, version) IN (VALUES ...)`` scanned the whole table per chunk.
                curs.execute(
                    f"WITH k(i, v) AS (VALUES {values}) "
                    f"SELECT e.originator_id AS i, e.originator_version AS v, e.topic, e.state "
                    f"FROM k CROSS JOIN {self.table} e "
                    "ON e.originator_id = k.i AND e.originator_version = k.v",
                    [p for ident, version in chunk for p in (ident.hex, version)],
                )
                found.update(self._found(curs.fetchall()))
            return found
        curs.execute(
            self._pg(
                "SELECT e.originator_id AS i, e.originator_version AS v, e.topic, e.state "
                "FROM {table} e JOIN unnest(%s::uuid[], %s::bigint[]) AS k(i, v) "
                "ON e.originator_id = k.i AND e.originator_version = k.v"
            ),
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return self._found(curs.fetchall())

    @staticmethod
    def _found(rows: Sequence[Any]) -> dict[Key, tuple[str, bytes]]:
        return {
            (UUID(str(r["i"])), int(r["v"])): (str(r["topic"]), bytes(r["state"])) for r in rows
        }

    def last_versions(self, curs: Any, ids: Sequence[UUID]) -> dict[UUID, int]:
        """Each aggregate's last version in the store (absent: the store has none of it)."""
        if not ids:
            return {}
        if self.sqlite:
            result: dict[UUID, int] = {}
            for start in range(0, len(ids), 800):
                chunk = ids[start : start + 800]
                curs.execute(
                    f"SELECT originator_id AS i, MAX(originator_version) AS v FROM {self.table} "
                    f"WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY originator_id",
                    [i.hex for i in chunk],
                )
                result.update({UUID(r["i"]): int(r["v"]) for r in curs.fetchall()})
            return result
        curs.execute(
            self._pg(
                "SELECT originator_id AS i, MAX(originator_version) AS v FROM {table} "
                "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
            ),
            (list(ids),),
        )
        return {UUID(str(r["i"])): int(r["v"]) for r in curs.fetchall()}

    def events_of(self, curs: Any, ident: UUID) -> list[StoredEvent]:
        if self.sqlite:
            curs.execute(
                f"SELECT originator_version AS v, topic, state FROM {self.table} "
                "WHERE originator_id=? ORDER BY originator_version",
                [ident.hex],
            )
        else:
            curs.execute(
                self._pg(
                    "SELECT originator_version AS v, topic, state FROM {table} "
                    "WHERE originator_id=%s ORDER BY originator_version"
                ),
                (ident,),
            )
        return [
            StoredEvent(ident, int(r["v"]), str(r["topic"]), bytes(r["state"]))
            for r in curs.fetchall()
        ]

    def insert(self, curs: Any, rows: Sequence[tuple[int, StoredEvent]]) -> None:
        """Insert events at the given positions (the table's unique keys still hold)."""
        if not rows:
            return
        params = [
            (position, self._id(_uuid(e.originator_id)), e.originator_version, e.topic, e.state)
            for position, e in rows
        ]
        if self.sqlite:
            curs.executemany(
                f"INSERT INTO {self.table} (rowid, originator_id, originator_version, topic, "
                "state) VALUES (?,?,?,?,?)",
                params,
            )
            return
        curs.executemany(
            self._pg(
                "INSERT INTO {table} (notification_id, originator_id, originator_version, topic, "
                "state) VALUES (%s,%s,%s,%s,%s)"
            ),
            params,
        )

    def finish(self, curs: Any, last_position: int) -> None:
        """Let later appends continue after the imported positions, and wake the relay."""
        if self.sqlite:
            return  # a rowid table continues after its largest rowid by itself
        curs.execute(
            SQL("SELECT pg_get_serial_sequence(%s, 'notification_id') AS s"),
            (f"{self.recorder.datastore.schema}.{self.table}",),
        )
        row = curs.fetchone()
        sequence = str(row["s"])
        curs.execute(
            SQL("SELECT setval(%s, GREATEST(%s, (SELECT last_value FROM {seq})))").format(
                seq=SQL(sequence)  # the name Postgres itself returned, already quoted
            ),
            (sequence, last_position),
        )
        curs.execute(SQL("NOTIFY {0}").format(Identifier(self.recorder.channel_name)))


def _uuid(value: object) -> UUID:
    """A UUID as it is (a str() and parse back cost a catch-up a few per cent), else parsed."""
    return value if isinstance(value, UUID) else UUID(str(value))
