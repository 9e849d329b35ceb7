"""The Postgres recorder Janus uses: the library's, with one round trip per append.

eventsourcing's pipelined insert costs about 340 us of client CPU per transaction, which caps a
2-core node far below what Postgres can commit. This recorder sends plain appends (no tracking)
as one call to a server-side function that does what the library does, in the same order: take
the EXCLUSIVE table lock (so positions become visible in commit order and a reader resuming from
its last position never skips one), NOTIFY, insert, return the positions. Appends with tracking
(process managers) keep the library's path. ``POSTGRES_ENABLE_DB_FUNCTIONS`` is not used because
the library's function takes no table lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class JanusPostgresProcessRecorder(PostgresProcessRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        function = Identifier(f"janus_append_{events_table_name}")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM set_config('lock_timeout', '{timeout}s', true); "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "RETURN QUERY INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id; "
                "END $$"
            ).format(
                schema=schema,
                function=function,
                table=table,
                timeout=SQL(str(int(datastore.lock_timeout))),
                channel=Identifier(self.channel_name),
            )
        )
        # Binary parameters: psycopg's C dumpers encode uuid and bytea arrays cheaply.
        self._append = SQL("SELECT {schema}.{function}(%b, %b, %t, %b) AS id").format(
            schema=schema, function=function
        )
        digest = hashlib.sha256(f"janus-ddl:{events_table_name}".encode()).digest()
        self._ddl_lock_key = int.from_bytes(digest[:8], "big", signed=True)
        _discard_read_only_sessions(datastore)

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Processes starting together would otherwise race on CREATE OR REPLACE FUNCTION
        # ("tuple concurrently updated"); the transaction-scoped lock serialises them.
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (self._ddl_lock_key,))
        super()._create_table(curs)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None or not stored_events:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn:
            rows = conn.execute(self._append, params, prepare=True).fetchall()
        return [int(row["id"]) for row in rows]


def _discard_read_only_sessions(datastore: PostgresDatastore) -> None:
    """Close a pooled session that refused a write as read-only, so the pool opens a new one.

    ``default_transaction_read_only`` is read when a session starts: a session opened while the
    database was read-only stays read-only after it is switched back, and the pool would keep
    handing it out, so every write (executor, scheduler, commands) would fail for good.
    """
    get_connection = datastore.get_connection

    @contextmanager
    def checked() -> Iterator[Connection[DictRow]]:
        with get_connection() as conn:
            try:
                yield conn
            except psycopg.errors.ReadOnlySqlTransaction as error:
                conn.close()
                # Reported like a lost connection, so the append is retried on a new session
                # (and still fails while the database really is read-only).
                raise psycopg.OperationalError(str(error)) from error

    datastore.get_connection = checked  # type: ignore[method-assign]
