"""The batch a relational projection writes through: rows read once, changed in memory, and
written back once per transaction, new rows by COPY (Postgres) or executemany (SQLite).

A rebuild replays each row's whole life (submitted, planned, decided, completed) mostly inside
one batch: inserting its final state once, in bulk, instead of an insert and three updates, is
what makes rebuilds fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Column, Table, any_, bindparam, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect

from projections.relational.tables import RelationalTables

PRELOAD_CHUNK = 500


class DuplicateRow(ValueError):
    pass


class Batch:
    """The rows one transaction touches, read through and written back once at flush.

    Reads see this batch's own writes.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every row: after a flush, or when the transaction is rolled back."""
        self.rows: dict[Table, dict[Any, dict[str, Any] | None]] = {}
        self.new: dict[Table, dict[Any, None]] = {}
        self.dirty: dict[Table, dict[Any, None]] = {}
        self.appended: dict[Table, list[dict[str, Any]]] = {}

    def get(self, conn: Connection, table: Table, key: Any) -> dict[str, Any] | None:
        cache = self.rows.setdefault(table, {})
        if key not in cache:
            key_column = _key(table)
            row = conn.execute(select(table).where(key_column == key)).mappings().first()
            cache[key] = dict(row) if row is not None else None
        return cache[key]

    def preload(self, conn: Connection, table: Table, keys: set[Any]) -> None:
        """Read many rows in a few queries; the ones not found are remembered as missing."""
        cache = self.rows.setdefault(table, {})
        wanted = sorted(k for k in keys if k not in cache)
        key_column = _key(table)
        for start in range(0, len(wanted), PRELOAD_CHUNK):
            chunk = wanted[start : start + PRELOAD_CHUNK]
            for row in conn.execute(_rows_with_keys(conn, table, chunk)).mappings():
                cache[row[key_column.name]] = dict(row)
            for key in chunk:
                cache.setdefault(key, None)

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        key = row[_key(table).name]
        cache = self.rows.setdefault(table, {})
        if cache.get(key) is not None:
            raise DuplicateRow(f"{table.name} already has a row {key}")
        cache[key] = row
        self.new.setdefault(table, {})[key] = None

    def update(
        self, conn: Connection, table: Table, key: Any, **changes: Any
    ) -> dict[str, Any] | None:
        """Change a row if it exists; a missing row stays missing, as an SQL UPDATE would."""
        row = self.get(conn, table, key)
        if row is None:
            return None
        row.update(changes)
        if key not in self.new.get(table, {}):
            self.dirty.setdefault(table, {})[key] = None
        return row

    def append(self, table: Table, row: dict[str, Any]) -> None:
        """Rows nothing reads back within a batch (audit, decisions) skip the cache."""
        self.appended.setdefault(table, []).append(row)

    def flush(self, conn: Connection) -> None:
        for table, keys in self.new.items():
            cache = self.rows[table]
            insert_many(conn, table, [_inserted(cache[key]) for key in keys])
        for table, rows in self.appended.items():
            insert_many(conn, table, rows)
        for table, keys in self.dirty.items():
            cache = self.rows[table]
            conn.execute(_update_by_key(table), [_by_key(table, cache[key]) for key in keys])


def _rows_with_keys(conn: Connection, table: Table, keys: list[Any]) -> Any:
    key = _key(table)
    if conn.dialect.name == "postgresql":
        # One array parameter: the same statement for any number of keys, parsed once.
        return select(table).where(key == any_(literal(keys, ARRAY(key.type))))
    return select(table).where(key.in_(keys))


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Straight to the driver: COPY on Postgres (psycopg's executemany sends one INSERT per
    row), executemany on SQLite. SQLAlchemy's per-row parameter handling would cost more than
    the inserts; the columns' own bind processors still convert the values.
    """
    dialect = conn.dialect
    writer = _writer(table, dialect)
    values = [writer.values(row) for row in rows]
    driver: Any = conn.connection.driver_connection
    if dialect.name != "postgresql":
        driver.executemany(writer.insert, values)
        return
    binary = writer.binary_types is not None and writer.binary_fits(values)
    with (
        driver.cursor() as cursor,
        cursor.copy(writer.copy_binary if binary else writer.copy) as copy,
    ):
        if binary:
            copy.set_types(writer.binary_types)
        for row in values:
            copy.write_row(row)


# Binary COPY is several times cheaper for psycopg to write than text, mostly for timestamps
# (text formats each one in Python). Per column type: the type psycopg dumps it as, and the
# Python types it is used for; a value of any other type (a naive datetime, a number in a text
# column) makes the table's rows of that batch go as text, which converts what binary cannot.
_BINARY_COPY: dict[str, tuple[str, tuple[type, ...]]] = {
    "VARCHAR": ("text", (str,)),
    "TEXT": ("text", (str,)),
    "INTEGER": ("int4", (int,)),
    "BIGINT": ("int8", (int,)),
    "BOOLEAN": ("bool", (bool,)),
    "TIMESTAMP WITH TIME ZONE": ("timestamptz", (datetime,)),
    "NUMERIC": ("numeric", (Decimal,)),
    # The JSON columns' bind processor wraps values for psycopg, which dumps the same text in
    # both formats (a json column's binary form is its text).
    "JSON": ("json", (Json,)),
}


class _Writer:
    """How one table's rows are converted and written, worked out once per table."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        columns = list(table.columns)
        into = f"{quote(table.name)} ({', '.join(quote(c.name) for c in columns)})"
        self.copy = f"COPY {into} FROM STDIN"
        self.copy_binary = f"{self.copy} (FORMAT BINARY)"
        self.insert = f"INSERT INTO {into} VALUES ({', '.join('?' for _ in columns)})"
        self.values = _row_values(table, dialect)
        kinds = [_BINARY_COPY.get(_base_type(c, dialect)) for c in columns]
        self.binary_types: list[str] | None = None
        self._accepted: list[tuple[type, ...]] = []
        if all(kind is not None for kind in kinds):
            self.binary_types = [kind[0] for kind in kinds if kind is not None]
            self._accepted = [kind[1] for kind in kinds if kind is not None]
        self._timestamps = {i for i, t in enumerate(self.binary_types or ()) if t == "timestamptz"}

    def binary_fits(self, rows: list[Sequence[Any]]) -> bool:
        """Whether binary COPY writes every value exactly as text COPY would.

        Column by column, with loops that stay in C: checking row by row in Python would cost
        as much as binary saves.
        """
        for i, column in enumerate(zip(*rows, strict=True)):
            accepted = self._accepted[i]
            for found in set(map(type, column)):
                if found is type(None):
                    continue
                if found is bool and bool not in accepted:
                    return False  # text COPY refuses True for an integer; binary would write 1
                if not issubclass(found, accepted):
                    return False
            # A naive datetime: text COPY reads it in the session's time zone, binary cannot.
            if i in self._timestamps and None in map(datetime.utcoffset, filter(None, column)):
                return False
        return True


@lru_cache(maxsize=256)
def _writer(table: Table, dialect: Dialect) -> _Writer:
    return _Writer(table, dialect)


def _base_type(column: Column[Any], dialect: Dialect) -> str:
    """``VARCHAR(36)`` -> ``VARCHAR``: the column's type in this dialect's DDL."""
    return column.type.compile(dialect=dialect).split("(", 1)[0].strip()


def _row_values(table: Table, dialect: Dialect) -> Callable[[dict[str, Any]], Sequence[Any]]:
    """A row's values in column order, converted where the column's type says so."""
    columns = list(table.columns)
    names = [c.name for c in columns]
    pick: Callable[[dict[str, Any]], Sequence[Any]] = (
        itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    )
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    converted = [(i, process) for i, process in enumerate(processors) if process is not None]
    if not converted:
        return pick

    def values(row: dict[str, Any]) -> list[Any]:
        found = list(pick(row))
        for i, process in converted:
            found[i] = process(found[i])
        return found

    return values


def _key(table: Table) -> Column[Any]:
    return next(iter(table.primary_key.columns))


def _update_by_key(table: Table) -> Any:
    key = _key(table)
    values: dict[str, Any] = {
        c.name: bindparam(f"v_{c.name}") for c in table.columns if c is not key
    }
    return update(table).where(key == bindparam("k")).values(values)


def _inserted(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None  # only rows this batch inserted are marked new
    return row


def _by_key(table: Table, row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None  # only rows that existed are marked dirty
    key = _key(table).name
    params = {f"v_{name}": value for name, value in row.items() if name != key}
    params["k"] = row[key]
    return params


class Rows:
    """What each aggregate's handler shares: one generation's tables and the projection's batch."""

    def __init__(self, tables: RelationalTables, batch: Batch) -> None:
        self.t = tables
        self._batch = batch
