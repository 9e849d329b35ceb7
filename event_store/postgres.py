"""The Postgres recorder Janus uses: the library's, with one round trip per append.

eventsourcing's pipelined insert costs about 340 us of client CPU per transaction, which caps a
2-core node far below what Postgres can commit. This recorder sends plain appends (no tracking)
as one call to a server-side function that does what the library does, in the same order: take
the EXCLUSIVE table lock (so positions become visible in commit order and a reader resuming from
its last position never skips one), NOTIFY, insert, return the positions. Appends with tracking
(process managers) keep the library's path. ``POSTGRES_ENABLE_DB_FUNCTIONS`` is not used because
the library's function takes no table lock.

Bounded waits: every session runs with ``lock_timeout`` (JANUS_LOCK_TIMEOUT_SECONDS), so start-up
DDL and reads wait for a stuck writer no longer than appends do. The library retries each call
ten times on any operational error, so a lock timeout cost ten timeouts; here a call is retried
only for a lost connection and only within one lock timeout in total, and every failure is a
``StoreFault`` naming its cause (event_store/faults.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar, cast

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    InternalError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from event_store.faults import StoreFault, StoreGuard

F = TypeVar("F", bound=Callable[..., Any])
RETRY_WAIT = 0.2
REPROBE_SECONDS = 1.0


class JanusPostgresDatastore(PostgresDatastore):
    """The library's datastore, with each checkout guarded and each failure named.

    The library builds its datastore inline in its factory; ``adopt`` re-classes that instance
    (adding only the guard) rather than copying the factory's twenty lines of settings parsing.
    """

    guard: StoreGuard

    @classmethod
    def adopt(cls, datastore: PostgresDatastore) -> JanusPostgresDatastore:
        if isinstance(datastore, cls):
            return datastore
        datastore.__class__ = cls
        adopted = cast(JanusPostgresDatastore, datastore)
        kwargs = adopted.pool.kwargs
        assert isinstance(kwargs, dict)
        # The pool is not open yet: every connection it makes carries the session lock timeout.
        kwargs["options"] = f"-c lock_timeout={int(adopted.lock_timeout * 1000)}"
        adopted.guard = StoreGuard(adopted.probe, REPROBE_SECONDS)
        return adopted

    def probe(self) -> None:
        """One direct connection, outside the pool, so a failure says why."""
        kwargs = dict(cast(dict[str, Any], self.pool.kwargs))
        kwargs.pop("row_factory", None)
        with psycopg.connect(**kwargs, connect_timeout=max(1, int(self.pool.timeout))) as conn:
            conn.execute("SELECT 1")

    @contextmanager
    def get_connection(self) -> Iterator[Connection[DictRow]]:
        self.guard.check()
        try:
            with super().get_connection() as conn:
                yield conn
        except (OperationalError, InterfaceError, InternalError) as error:
            fault = self.guard.explain(error)
            if fault is not None and fault.retryable:
                # A server restart or terminated sessions leave every idle pooled connection
                # dead: drop them all now, so the retry gets a live one, not the next corpse.
                self.pool.check()
            if fault is None or fault is error:
                raise
            raise fault from error
        self.guard.healthy()


def bounded(method: F) -> F:
    """The library's method without its ten retries: retried only for a lost connection, and
    only within one lock timeout in total."""
    inner = getattr(method, "__wrapped__", method)

    @wraps(inner)
    def call(self: JanusPostgresProcessRecorder, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + max(1, self.datastore.lock_timeout)
        while True:
            try:
                return inner(self, *args, **kwargs)
            except (InterfaceError, OperationalError) as error:
                if isinstance(error, StoreFault) and not error.retryable:
                    raise
                if time.monotonic() + RETRY_WAIT >= deadline:
                    raise
                time.sleep(RETRY_WAIT)

    return cast(F, call)


class JanusPostgresProcessRecorder(PostgresProcessRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            JanusPostgresDatastore.adopt(datastore),
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

    select_events = bounded(PostgresProcessRecorder.select_events)
    select_notifications = bounded(PostgresProcessRecorder.select_notifications)
    max_notification_id = bounded(PostgresProcessRecorder.max_notification_id)
    insert_tracking = bounded(PostgresProcessRecorder.insert_tracking)
    max_tracking_id = bounded(PostgresProcessRecorder.max_tracking_id)
    has_tracking_id = bounded(PostgresProcessRecorder.has_tracking_id)
    _library_insert_events = PostgresProcessRecorder.insert_events.__wrapped__

    @bounded
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None or not stored_events:
            ids: Sequence[int] | None = type(self)._library_insert_events(
                self, stored_events, **kwargs
            )
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
