"""Indexed reads of the stored events table that the notification API does not offer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from event_store.application import JanusApplication

# -- direct reads of the events table ----------------------------------------------------------


class UnsupportedStore(TypeError):
    """A recorder these reads do not know (neither SQLite nor Postgres)."""


class EventTable:
    """Indexed reads the notification API does not offer: one aggregate's events with their
    positions, the version an aggregate had at a position, ids by prefix.

    Both stores keep events in one table with a primary key on (originator_id,
    originator_version) and a position column (SQLite's rowid, Postgres' notification_id), so
    these are index lookups, never a scan of the log.
    """

    def __init__(self, app: JanusApplication) -> None:
        self._app = app
        recorder = app.recorder
        if isinstance(recorder, SQLiteApplicationRecorder):
            self._kind = "sqlite"
            self._table = recorder.events_table_name
        elif isinstance(recorder, PostgresApplicationRecorder):
            self._kind = "postgres"
            self._table = recorder.events_table_name
            self._schema = recorder.datastore.schema
        else:
            raise UnsupportedStore(f"no indexed reads for {type(recorder).__name__}")

    def _rows(self, sqlite_sql: str, postgres_sql: str, params: Sequence[Any]) -> list[Any]:
        recorder: Any = self._app.recorder
        if self._kind == "sqlite":
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(sqlite_sql.format(table=self._table), list(params))
                return list(c.fetchall())
        statement = SQL(postgres_sql).format(  # type: ignore[arg-type, unused-ignore]
            table=Identifier(self._schema, self._table)
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, list(params))
            return list(curs.fetchall())

    def _key(self, aggregate_id: UUID) -> Any:
        return aggregate_id.hex if self._kind == "sqlite" else aggregate_id

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        """How many of the aggregate's events are at or before ``position`` (0: not yet)."""
        rows = self._rows(
            "SELECT MAX(originator_version) AS v FROM {table} WHERE originator_id=? AND rowid<=?",
            "SELECT MAX(originator_version) AS v FROM {table} "
            "WHERE originator_id=%s AND notification_id<=%s",
            (self._key(aggregate_id), position),
        )
        value = rows[0]["v"] if rows else None
        return int(value or 0)

    def events_of(
        self, aggregate_id: UUID, upto: int | None = None, limit: int = 2**31
    ) -> list[Notification]:
        """The aggregate's events in version order, each with its log position."""
        stop = upto if upto is not None else 2**62
        rows = self._rows(
            "SELECT rowid AS position, originator_version, topic, state FROM {table} "
            "WHERE originator_id=? AND rowid<=? ORDER BY originator_version LIMIT ?",
            "SELECT notification_id AS position, originator_version, topic, state FROM {table} "
            "WHERE originator_id=%s AND notification_id<=%s ORDER BY originator_version LIMIT %s",
            (self._key(aggregate_id), stop, limit),
        )
        return [
            Notification(
                id=int(row["position"]),
                originator_id=aggregate_id,
                originator_version=int(row["originator_version"]),
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[UUID]:
        """Aggregate ids starting with ``prefix`` (hex, dashes ignored), by index range."""
        text = normalize_hex(prefix)
        low = text.ljust(32, "0")
        high = _successor(text)
        if self._kind == "sqlite":
            params: list[Any] = [low]
            where = "originator_id>=?"
            if high is not None:
                where += " AND originator_id<?"
                params.append(high.ljust(32, "0"))
            rows = self._rows(
                f"SELECT DISTINCT originator_id AS id FROM {{table}} WHERE {where} "
                "ORDER BY originator_id LIMIT ?",
                "",
                [*params, limit],
            )
            return [UUID(row["id"]) for row in rows]
        params = [UUID(low)]
        where = "originator_id>=%s"
        if high is not None:
            where += " AND originator_id<%s"
            params.append(UUID(high.ljust(32, "0")))
        rows = self._rows(
            "",
            f"SELECT DISTINCT originator_id AS id FROM {{table}} WHERE {where} "
            "ORDER BY originator_id LIMIT %s",
            [*params, limit],
        )
        return [UUID(str(row["id"])) for row in rows]


def _successor(hex_prefix: str) -> str | None:
    """The smallest hex string of the same length greater than every extension of the prefix."""
    digits = list(hex_prefix)
    for i in range(len(digits) - 1, -1, -1):
        if digits[i] != "f":
            digits[i] = format(int(digits[i], 16) + 1, "x")
            return "".join(digits[: i + 1])
    return None


def normalize_hex(value: str) -> str:
    return value.strip().lower().replace("-", "")
