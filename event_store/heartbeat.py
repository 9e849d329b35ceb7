"""Status rows: a long-running worker (the relay, a projection feed) writes its state to one row
on each change and as a heartbeat; any process reads it, and a row older than a few heartbeats
means the worker is gone (killed), whatever it last said."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Table, insert, inspect, select, update
from sqlalchemy.engine import Engine

# A worker that has not reported for this many heartbeats is presumed dead (e.g. SIGKILLed).
STALE_HEARTBEATS = 3


class StatusRow:
    """One worker's row in ``table``, keyed by ``key``; the table is created on first write."""

    def __init__(self, engine: Engine, table: Table, key: str) -> None:
        self._engine = engine
        self._table = table
        self._key_column = table.c[key_column(table)]
        self.key = key
        self._table_ready = False

    def write(self, **values: Any) -> None:
        """Store ``values`` and the time now (``updated_at``): the heartbeat."""
        if not self._table_ready:
            self._table.metadata.create_all(self._engine, tables=[self._table])
            self._table_ready = True
        values["updated_at"] = datetime.now(UTC)
        table, key = self._table, self._key_column
        with self._engine.begin() as conn:
            changed = conn.execute(update(table).where(key == self.key).values(values))
            if changed.rowcount == 0:
                conn.execute(insert(table).values({key.name: self.key, **values}))


def read_status_row(engine: Engine, table: Table, key: str) -> Row[Any] | None:
    """The row a worker last wrote for ``key``; None if it never wrote one."""
    if not inspect(engine).has_table(table.name):
        return None
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c[key_column(table)] == key)).first()


def aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_alive(updated_at: datetime, heartbeat_seconds: float) -> bool:
    """Whether a row written at ``updated_at`` is recent enough for its worker to be running."""
    age = datetime.now(UTC) - aware(updated_at)
    return age.total_seconds() < STALE_HEARTBEATS * heartbeat_seconds


def key_column(table: Table) -> str:
    (column,) = table.primary_key.columns
    return column.name
