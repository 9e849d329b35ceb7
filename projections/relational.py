"""Relational views: goals, decisions, confirmations, effects, jobs, fires, the audit trail,
documents, trade orders and the positions their fills add up to.

Tables come from a factory, ``relational_tables(metadata, suffix)``, so that a rebuild can create
the next generation (``goals__g3``, ...) beside the live tables. Every index and constraint is
named after its physical table, so two generations never collide on a name in one schema; after
a switch the live ``goals`` keeps the index names it was built with (``ix_goals__g3_...``).
Migrations (projections/migrations) create generation one; a test holds the two to the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    any_,
    bindparam,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from adapters.timer import build_trigger, next_fire_after
from domain.base import JanusAggregate
from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import FireStatus, Job, JobFire
from domain.trade import Side, TradeOrder
from event_store.reader import LoggedEvent
from projections.runner import POSITION, RebuildableProjection

log = logging.getLogger(__name__)

ID = String(36)
# Free text the domain does not bound to a length (actors, command ids, correlation ids, names a
# broker or an extractor chose) is TEXT: a value the domain accepted must never stall a view.
# Counts and sizes that can pass 2**31 are 64-bit, like log positions.
BIG = POSITION
# Quantities have at most 12 integer and 8 decimal digits (commands/models.py); averages keep 12.
DECIMAL_PLACES = 12
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC on Postgres; text on SQLite, which would otherwise round through a float."""

    impl = Numeric(38, DECIMAL_PLACES)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, DECIMAL_PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else plain(Decimal(value))


def plain(value: Decimal) -> Decimal:
    """Without trailing zeros or an exponent: NUMERIC(38, 12) hands back 10.000000000000."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def exact(value: Decimal) -> Decimal:
    return plain(value.quantize(_QUANTUM))


@dataclass(frozen=True)
class RelationalTables:
    """One generation of the relational views. ``suffix`` is "" for the live tables."""

    suffix: str
    goals: Table
    decisions: Table
    confirmations: Table
    effects: Table
    jobs: Table
    job_fires: Table
    audit: Table
    documents: Table
    orders: Table
    positions: Table

    @property
    def all(self) -> tuple[Table, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "suffix")


def relational_tables(metadata: MetaData, suffix: str = "") -> RelationalTables:
    def table(base: str, *columns: Column[Any], indexes: tuple[tuple[str, ...], ...] = ()) -> Table:
        name = base + suffix
        named = [Index(f"ix_{name}_{'_'.join(cols)}", *cols) for cols in indexes]
        return Table(name, metadata, *columns, *named)

    return RelationalTables(
        suffix=suffix,
        goals=table(
            "goals",
            Column("id", ID, primary_key=True),
            Column("text", Text, nullable=False),
            Column("submitted_by", String(200), nullable=False),
            Column("priority", Integer, nullable=False),
            Column("status", String(20), nullable=False),
            Column("latest_decision_id", ID),
            Column("latest_action", Text),
            Column("outcome", Text),
            Column("submitted_at", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            indexes=(("status", "submitted_at"),),
        ),
        # Keyed by the event's position: a decision id is unique within its goal only (the
        # domain allows a client's id again on another goal), so it cannot key this view.
        decisions=table(
            "decisions",
            Column("decision_id", ID, nullable=False),
            Column("goal_id", ID, nullable=False),
            Column("model", String(200), nullable=False),
            Column("action", JSON, nullable=False),
            Column("context_ids", JSON, nullable=False),
            Column("recorded_at", DateTime(timezone=True), nullable=False),
            Column("position", POSITION, primary_key=True, autoincrement=False),
            indexes=(("goal_id",), ("decision_id",)),
        ),
        confirmations=table(
            "confirmations",
            Column("id", ID, primary_key=True),
            # A job's fire requests without a goal or decision (then job_id and fire_id).
            Column("goal_id", ID),
            Column("decision_id", ID),
            Column("job_id", ID),
            Column("fire_id", ID),
            Column("action", String(200), nullable=False),
            Column("parameters", JSON, nullable=False),
            Column("hazard", String(10), nullable=False),
            Column("status", String(20), nullable=False),
            Column("requested_at", DateTime(timezone=True), nullable=False),
            Column("expires_at", DateTime(timezone=True), nullable=False),
            Column("decided_by", Text),
            Column("decided_at", DateTime(timezone=True)),
            Column("reason", Text),
            indexes=(("goal_id",), ("status", "expires_at")),
        ),
        effects=table(
            "effects",
            Column("id", ID, primary_key=True),
            Column("confirmation_id", ID, nullable=False, unique=True),
            Column("goal_id", ID),
            Column("action", Text, nullable=False),
            Column("status", String(20), nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("result", JSON),
            Column("error", Text),
            Column("happened", Boolean),
            Column("started_at", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            indexes=(("goal_id",), ("status", "started_at")),
        ),
        jobs=table(
            "jobs",
            Column("id", ID, primary_key=True),
            Column("name", String(200), nullable=False),
            Column("trigger", JSON, nullable=False),
            Column("action", JSON, nullable=False),
            Column("misfire_policy", String(20), nullable=False),
            Column("overlap", String(20), nullable=False, server_default="skip"),
            Column("max_catch_up", Integer, nullable=False),
            Column("max_attempts", Integer, nullable=False),
            Column("status", String(20), nullable=False),
            Column("scheduled_at", DateTime(timezone=True), nullable=False),
            Column("last_scheduled_for", DateTime(timezone=True)),
            Column("last_outcome", String(20)),
            Column("fired_count", Integer, nullable=False, default=0),
            Column("succeeded_count", Integer, nullable=False, default=0),
            Column("failed_count", Integer, nullable=False, default=0),
            Column("missed_count", Integer, nullable=False, default=0),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            Column("next_fire_at", DateTime(timezone=True)),
            indexes=(("status",), ("status", "next_fire_at")),
        ),
        job_fires=table(
            "job_fires",
            Column("id", ID, primary_key=True),
            Column("job_id", ID, nullable=False),
            Column("scheduled_for", DateTime(timezone=True), nullable=False),
            Column("manual", Boolean, nullable=False),
            Column("status", String(20), nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("error", Text),
            Column("confirmation_id", ID),
            Column("next_retry_at", DateTime(timezone=True)),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            indexes=(("status",), ("job_id", "scheduled_for")),
        ),
        audit=table(
            "audit",
            Column("position", POSITION, primary_key=True, autoincrement=False),
            Column("event_id", ID, nullable=False, unique=True),
            Column("event_type", String(100), nullable=False),
            Column("aggregate_id", ID, nullable=False),
            Column("aggregate_version", Integer, nullable=False),
            Column("correlation_id", Text, nullable=False),
            Column("causation_id", Text, nullable=False),
            Column("command_id", Text, nullable=False),
            Column("actor", Text, nullable=False),
            Column("node_id", Text, nullable=False),
            Column("recorded_at", DateTime(timezone=True), nullable=False),
            Column("summary", Text, nullable=False),
            indexes=(("aggregate_id",), ("correlation_id", "position"), ("recorded_at",)),
        ),
        documents=table(
            "documents",
            Column("id", ID, primary_key=True),
            Column("source_uri", Text, nullable=False),
            Column("title", Text, nullable=False),
            Column("content_type", String(200), nullable=False),
            Column("sha256", String(64), nullable=False),
            Column("size_bytes", BIG, nullable=False),
            Column("status", String(20), nullable=False),
            Column("blob_key", Text, nullable=False),
            Column("retraction_reason", Text),
            Column("retracted_at", DateTime(timezone=True)),
            Column("registered_at", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            indexes=(("status", "registered_at"), ("sha256",)),
        ),
        orders=table(
            "orders",
            Column("id", ID, primary_key=True),
            Column("goal_id", ID),
            Column("symbol", String(16), nullable=False),
            Column("side", String(4), nullable=False),
            Column("quantity", ExactDecimal, nullable=False),
            Column("limit_price", ExactDecimal),
            Column("status", String(20), nullable=False),
            Column("filled_quantity", ExactDecimal, nullable=False),
            Column("average_fill_price", ExactDecimal),
            Column("fill_count", Integer, nullable=False),
            Column("broker_order_id", Text),
            Column("risk_passed", Boolean),
            Column("risk_violations", JSON),
            Column("reason", Text),
            Column("proposed_at", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            indexes=(("status", "proposed_at"), ("symbol",), ("goal_id",)),
        ),
        positions=table(
            "positions",
            Column("symbol", String(16), primary_key=True),
            Column("quantity", ExactDecimal, nullable=False),
            Column("average_cost", ExactDecimal, nullable=False),
            Column("realized_pnl", ExactDecimal, nullable=False),
            Column("fill_count", Integer, nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
        ),
    )


metadata = MetaData()
LIVE = relational_tables(metadata)
# The live tables under their stable names: readers (queries.py, the CLI) only ever use these.
goals = LIVE.goals
decisions = LIVE.decisions
confirmations = LIVE.confirmations
effects = LIVE.effects
jobs = LIVE.jobs
job_fires = LIVE.job_fires
audit = LIVE.audit
documents = LIVE.documents
orders = LIVE.orders
positions = LIVE.positions


# -- the batch: read through, write back once ------------------------------------------------------


PRELOAD_CHUNK = 500


class DuplicateRow(ValueError):
    pass


class _Batch:
    """The rows one transaction touches, read through and written back once at flush.

    A rebuild replays each row's whole life (submitted, planned, decided, completed) mostly
    inside one batch: inserting its final state once, in bulk, instead of an insert and three
    updates, is what makes rebuilds fast. Reads see this batch's own writes.
    """

    def __init__(self) -> None:
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
            _insert_many(conn, table, [_inserted(cache[key]) for key in keys])
        for table, rows in self.appended.items():
            _insert_many(conn, table, rows)
        for table, keys in self.dirty.items():
            cache = self.rows[table]
            conn.execute(_update_by_key(table), [_by_key(table, cache[key]) for key in keys])


def _rows_with_keys(conn: Connection, table: Table, keys: list[Any]) -> Any:
    key = _key(table)
    if conn.dialect.name == "postgresql":
        # One array parameter: the same statement for any number of keys, parsed once.
        return select(table).where(key == any_(literal(keys, ARRAY(key.type))))
    return select(table).where(key.in_(keys))


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
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


# -- the projection --------------------------------------------------------------------------------


_NOT_SUMMARIZED = frozenset(
    {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}
)
SUMMARY_CHARS = 500


def _summary(event: Any) -> str:
    parts, size = [], 0
    for name, value in vars(event).items():
        if name in _NOT_SUMMARIZED:
            continue
        part = f"{name}={value}"
        parts.append(part)
        size += len(part) + 2
        if size > SUMMARY_CHARS:  # the rest would be cut off anyway
            break
    text = ", ".join(parts)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _fire_opening(event: Any) -> tuple[FireStatus, str, str | None]:
    """(status, the job's counter, error) of a fire's first event."""
    match event:
        case JobFire.Missed():
            return FireStatus.MISSED, "missed_count", event.reason
        case JobFire.SkippedOverlap():
            running = event.running_fire_id
            return (
                FireStatus.SKIPPED_OVERLAP,
                "missed_count",
                f"the previous fire {running} was still running",
            )
        case JobFire.Queued():
            return FireStatus.QUEUED, "fired_count", None
    return FireStatus.FIRED, "fired_count", None


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class RelationalProjection(RebuildableProjection):
    """Version 2 added documents, orders, positions and jobs.next_fire_at; version 3 job-fired
    confirmations (job_id, fire_id), jobs.overlap and job_fires.confirmation_id; version 4
    documents' title, blob key, retraction reason and time (the pipeline columns went: whether
    a view indexed a document is that view's state)."""

    name = "relational"
    version = 4

    def __init__(self, tables: RelationalTables = LIVE) -> None:
        self.t = tables
        self.metadata = tables.goals.metadata
        self._batch = _Batch()
        self._triggers: dict[str, Any] = {}
        self._changes: dict[type, Table | None] = {}
        self._creates: dict[type, Table | None] = {}

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.t.all

    def at_generation(self, suffix: str) -> RelationalProjection:
        return RelationalProjection(relational_tables(MetaData(), suffix))

    def create_schema(self, conn: Connection) -> None:
        """The live tables belong to the migrations; other generations are made from the code."""
        if self.t.suffix:
            self.metadata.create_all(conn)

    def flush(self, conn: Connection) -> None:
        batch, self._batch = self._batch, _Batch()
        batch.flush(conn)

    def discard(self) -> None:
        self._batch = _Batch()

    def prepare(self, events: Sequence[LoggedEvent], conn: Connection) -> None:
        """Read the rows a batch will change in one query per table, not one per event.

        Not the rows the batch itself creates before changing them (most of them, as an
        aggregate's first events tend to arrive together): those it finds in its own cache.
        """
        wanted: dict[Table, set[Any]] = {}
        created: set[tuple[Table, str]] = set()
        symbols: set[str] = set()
        for logged in events:
            table, key = self._row_of(logged.event)
            if table is not None and (table, key) not in created:
                wanted.setdefault(table, set()).add(key)
            new = self._table_created_by(type(logged.event))
            if new is not None:
                created.add((new, str(logged.originator_id)))
            if isinstance(logged.event, TradeOrder.Proposed):
                symbols.add(logged.event.symbol)
        for table, keys in wanted.items():
            self._batch.preload(conn, table, keys)
        # Second hop: the jobs of the fires, the positions of the orders.
        fires = self._batch.rows.get(self.t.job_fires, {}).values()
        jobs = {fire["job_id"] for fire in fires if fire is not None}
        self._batch.preload(conn, self.t.jobs, jobs)
        orders = self._batch.rows.get(self.t.orders, {}).values()
        symbols |= {order["symbol"] for order in orders if order is not None}
        self._batch.preload(conn, self.t.positions, symbols)

    def _row_of(self, event: Any) -> tuple[Table | None, str]:
        """The existing row an event changes (creations change none, fires their job)."""
        kind = type(event)
        if kind not in self._changes:
            self._changes[kind] = self._table_changed_by(kind)
        table = self._changes[kind]
        if table is None:
            return None, ""
        if table is self.t.jobs and issubclass(kind, JanusAggregate.Created):
            return table, str(event.job_id)
        return table, str(event.originator_id)

    def _table_created_by(self, kind: type) -> Table | None:
        """The table whose row an event of this kind inserts, keyed by its aggregate id."""
        if kind not in self._creates:
            created = issubclass(kind, JanusAggregate.Created)
            self._creates[kind] = self._aggregate_table(kind) if created else None
        return self._creates[kind]

    def _table_changed_by(self, kind: type) -> Table | None:
        if issubclass(kind, JobFire.Fired | JobFire.Missed):
            return self.t.jobs
        if issubclass(kind, JanusAggregate.Created):
            return None
        return self._aggregate_table(kind)

    def _aggregate_table(self, kind: type) -> Table | None:
        for aggregate, table in (
            (Goal.Event, self.t.goals),
            (Confirmation.Event, self.t.confirmations),
            (Effect.Event, self.t.effects),
            (Job.Event, self.t.jobs),
            (JobFire.Event, self.t.job_fires),
            (Document.Event, self.t.documents),
            (TradeOrder.Event, self.t.orders),
        ):
            if issubclass(kind, aggregate):
                return table
        return None

    def process_event(self, logged: LoggedEvent, conn: Connection) -> None:
        event = logged.event
        if isinstance(event, CommandRecord.Event):
            return
        key = str(logged.originator_id)
        self._audit(logged, key)
        if isinstance(event, Goal.Event):
            self._goal(logged, key, conn)
        elif isinstance(event, Confirmation.Event):
            self._confirmation(event, key, conn)
        elif isinstance(event, Effect.Event):
            self._effect(event, key, conn)
        elif isinstance(event, Job.Event):
            self._job(event, key, conn)
        elif isinstance(event, JobFire.Event):
            self._fire(event, key, conn)
        elif isinstance(event, Document.Event):
            self._document(event, key, conn)
        elif isinstance(event, TradeOrder.Event):
            self._order(event, key, conn)

    def _audit(self, logged: LoggedEvent, aggregate_id: str) -> None:
        event = logged.event
        meta = event.meta
        self._batch.append(
            self.t.audit,
            {
                "position": logged.position,
                "event_id": str(meta.event_id),
                "event_type": logged.type_name,
                "aggregate_id": aggregate_id,
                "aggregate_version": logged.originator_version,
                "correlation_id": meta.correlation_id,
                "causation_id": meta.causation_id,
                "command_id": meta.command_id,
                "actor": str(meta.actor),
                "node_id": meta.node_id,
                "recorded_at": event.timestamp,
                "summary": _summary(event),
            },
        )

    # -- goals -------------------------------------------------------------------------------------

    def _goal(self, logged: LoggedEvent, gid: str, conn: Connection) -> None:
        event = logged.event
        changes: dict[str, Any] = {"updated_at": event.timestamp}
        match event:
            case Goal.Submitted():
                self._batch.insert(
                    self.t.goals,
                    {
                        "id": gid,
                        "text": event.text,
                        "submitted_by": event.submitted_by,
                        "priority": event.priority,
                        "status": "submitted",
                        "latest_decision_id": None,
                        "latest_action": None,
                        "outcome": None,
                        "submitted_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
                )
                return
            case Goal.Planned():
                changes["status"] = "planned"
            case Goal.DecisionRecorded():
                changes["latest_decision_id"] = str(event.decision_id)
                changes["latest_action"] = str(event.action.get("name", ""))
                self._batch.append(
                    self.t.decisions,
                    {
                        "decision_id": str(event.decision_id),
                        "goal_id": gid,
                        "model": event.model,
                        "action": event.action,
                        "context_ids": list(event.context_ids),
                        "recorded_at": event.timestamp,
                        "position": logged.position,
                    },
                )
            case Goal.Completed():
                changes.update(status="completed", outcome=event.summary)
            case Goal.Failed():
                changes.update(status="failed", outcome=event.reason)
            case Goal.Cancelled():
                changes.update(status="cancelled", outcome=event.reason)
        self._batch.update(conn, self.t.goals, gid, **changes)

    # -- confirmations and effects -----------------------------------------------------------------

    def _confirmation(self, event: Any, cid: str, conn: Connection) -> None:
        match event:
            case Confirmation.Requested():
                self._batch.insert(
                    self.t.confirmations,
                    {
                        "id": cid,
                        "goal_id": _opt(event.goal_id),
                        "decision_id": _opt(event.decision_id),
                        "job_id": _opt(event.job_id),
                        "fire_id": _opt(event.fire_id),
                        "action": event.action,
                        "parameters": event.parameters,
                        "hazard": event.hazard,
                        "status": "pending",
                        "requested_at": event.timestamp,
                        "expires_at": event.expires_at,
                        "decided_by": None,
                        "decided_at": None,
                        "reason": None,
                    },
                )
                return
            case Confirmation.Granted():
                changes = {"status": "granted", "decided_by": event.granted_by}
            case Confirmation.Denied():
                changes = {
                    "status": "denied",
                    "decided_by": event.denied_by,
                    "reason": event.reason,
                }
            case Confirmation.Expired():
                changes = {"status": "expired"}
            case Confirmation.Cancelled():
                changes = {
                    "status": "cancelled",
                    "decided_by": event.cancelled_by,
                    "reason": event.reason,
                }
            case _:
                return
        self._batch.update(conn, self.t.confirmations, cid, decided_at=event.timestamp, **changes)

    def _effect(self, event: Any, eid: str, conn: Connection) -> None:
        match event:
            case Effect.Started():
                self._batch.insert(
                    self.t.effects,
                    {
                        "id": eid,
                        "confirmation_id": str(event.confirmation_id),
                        "goal_id": _opt(event.goal_id),
                        "action": event.action,
                        "status": "started",
                        "attempt": 1,
                        "result": None,
                        "error": None,
                        "happened": None,
                        "started_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
                )
                return
            case Effect.AttemptStarted():
                changes: dict[str, Any] = {"status": "started", "attempt": event.attempt}
            case Effect.Succeeded():
                changes = {"status": "succeeded", "result": event.result}
            case Effect.Failed():
                changes = {"status": "failed", "error": event.error}
            case Effect.OutcomeUnknown():
                changes = {"status": "outcome_unknown", "error": event.reason}
            case Effect.Reconciled():
                changes = {"status": "reconciled", "happened": event.happened}
            case _:
                return
        self._batch.update(conn, self.t.effects, eid, updated_at=event.timestamp, **changes)

    # -- jobs and fires ----------------------------------------------------------------------------

    def _job(self, event: Any, jid: str, conn: Connection) -> None:
        match event:
            case Job.Scheduled():
                row: dict[str, Any] = {
                    "id": jid,
                    "name": event.name,
                    "trigger": event.trigger,
                    "action": event.action,
                    "misfire_policy": event.misfire_policy,
                    "overlap": event.overlap,
                    "max_catch_up": event.max_catch_up,
                    "max_attempts": event.max_attempts,
                    "status": "active",
                    "scheduled_at": event.timestamp,
                    "last_scheduled_for": None,
                    "last_outcome": None,
                    "fired_count": 0,
                    "succeeded_count": 0,
                    "failed_count": 0,
                    "missed_count": 0,
                    "updated_at": event.timestamp,
                    "next_fire_at": None,
                }
                row["next_fire_at"] = self._next_fire(row, event.timestamp)
                self._batch.insert(self.t.jobs, row)
                return
            case Job.Paused():
                changes: dict[str, Any] = {"status": "paused", "next_fire_at": None}
            case Job.Resumed():
                changes = {"status": "active"}
            case Job.Removed():
                changes = {"status": "removed", "next_fire_at": None}
            case _:
                return
        job = self._batch.update(conn, self.t.jobs, jid, updated_at=event.timestamp, **changes)
        if job is not None and isinstance(event, Job.Resumed):
            # Times that fell inside the pause are neither run nor missed (the scheduler's rule).
            last = job["last_scheduled_for"]
            after = max(event.timestamp, _aware(last)) if last else event.timestamp
            job["next_fire_at"] = self._next_fire(job, after)

    def _next_fire(self, job: dict[str, Any], after: datetime) -> datetime | None:
        """The first scheduled time after ``after``, computed as the scheduler computes it."""
        trigger = self._trigger(job)
        return None if trigger is None else next_fire_after(trigger, after)

    def _trigger(self, job: dict[str, Any]) -> Any:
        """Triggers are immutable facts of a job, so one per job is built once and kept."""
        if job["id"] not in self._triggers:
            try:
                self._triggers[job["id"]] = build_trigger(
                    job["trigger"], _aware(job["scheduled_at"])
                )
            except (ValueError, LookupError) as error:
                # The timer engine rejects this trigger too and says so; the view keeps the job.
                log.warning("job %s: no next fire time: %s", job["id"], error)
                self._triggers[job["id"]] = None
        return self._triggers[job["id"]]

    def _fire(self, event: Any, fid: str, conn: Connection) -> None:
        match event:
            case JobFire.Fired() | JobFire.Missed() | JobFire.Queued() | JobFire.SkippedOverlap():
                self._new_fire(event, fid, conn)
                return
            case JobFire.ActionRequested():
                changes: dict[str, Any] = {
                    "status": FireStatus.WAITING.value,
                    "confirmation_id": str(event.confirmation_id),
                }
                counter = ""
            case JobFire.Succeeded():
                changes = {"status": FireStatus.SUCCEEDED.value, "error": None}
                counter = "succeeded_count"
            case JobFire.Failed():
                retrying = event.next_retry_at is not None
                status = FireStatus.RETRY_SCHEDULED if retrying else FireStatus.FAILED
                changes = {
                    "status": status.value,
                    "error": event.error,
                    "next_retry_at": event.next_retry_at,
                }
                counter = "failed_count"
            case JobFire.Retried():
                changes = {"status": FireStatus.FIRED.value, "attempt": event.attempt}
                counter = ""
            case JobFire.OutcomeUnknown():
                changes = {"status": FireStatus.OUTCOME_UNKNOWN.value, "error": event.reason}
                counter = ""
            case _:
                return
        fire = self._batch.update(
            conn, self.t.job_fires, fid, updated_at=event.timestamp, **changes
        )
        if fire is None:
            raise LookupError(f"fire {fid} has no row: its Fired event was never projected")
        job = self._batch.update(conn, self.t.jobs, fire["job_id"], last_outcome=changes["status"])
        if job is not None and counter:
            job[counter] += 1

    def _new_fire(self, event: Any, fid: str, conn: Connection) -> None:
        status, counter, error = _fire_opening(event)
        self._batch.insert(
            self.t.job_fires,
            {
                "id": fid,
                "job_id": str(event.job_id),
                "scheduled_for": event.scheduled_for,
                "manual": event.manual,
                "status": status.value,
                "attempt": 1,
                "error": error,
                "confirmation_id": None,
                "next_retry_at": None,
                "updated_at": event.timestamp,
            },
        )
        job = self._batch.update(conn, self.t.jobs, str(event.job_id), last_outcome=status.value)
        if job is None:
            return
        job[counter] += 1
        if not event.manual:
            job["last_scheduled_for"] = event.scheduled_for
            if job["status"] == "active":
                job["next_fire_at"] = self._next_fire(job, event.scheduled_for)

    # -- documents ---------------------------------------------------------------------------------

    def _document(self, event: Any, did: str, conn: Connection) -> None:
        match event:
            case Document.Registered():
                self._batch.insert(
                    self.t.documents,
                    {
                        "id": did,
                        "source_uri": event.source_uri,
                        "title": event.title,
                        "content_type": event.content_type,
                        "sha256": event.sha256,
                        "size_bytes": event.size_bytes,
                        "status": "registered",
                        "blob_key": event.blob_key,
                        "retraction_reason": None,
                        "retracted_at": None,
                        "registered_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
                )
                return
            case Document.Retracted():
                changes: dict[str, Any] = {
                    "status": "retracted",
                    "retraction_reason": event.reason,
                    "retracted_at": event.timestamp,
                }
            case _:
                # Entity extractions are the graph view's; whether a view indexed a document
                # is that view's state.
                return
        self._batch.update(conn, self.t.documents, did, updated_at=event.timestamp, **changes)

    # -- trade orders and positions ----------------------------------------------------------------

    def _order(self, event: Any, oid: str, conn: Connection) -> None:
        match event:
            case TradeOrder.Proposed():
                self._batch.insert(self.t.orders, _proposed_order(oid, event))
                return
            case TradeOrder.RiskChecked():
                changes: dict[str, Any] = {
                    "status": "risk_approved" if event.passed else "risk_rejected",
                    "risk_passed": event.passed,
                    "risk_violations": list(event.violations),
                }
            case TradeOrder.Submitted():
                changes = {"status": "submitted", "broker_order_id": event.broker_order_id}
            case TradeOrder.PartiallyFilled():  # and Filled, its subclass
                self._fill(oid, event, conn)
                return
            case TradeOrder.Rejected():
                changes = {"status": "rejected", "reason": event.reason}
            case TradeOrder.Cancelled():
                changes = {"status": "cancelled", "reason": event.reason}
            case _:
                return
        self._batch.update(conn, self.t.orders, oid, updated_at=event.timestamp, **changes)

    def _fill(self, oid: str, event: Any, conn: Connection) -> None:
        order = self._batch.get(conn, self.t.orders, oid)
        if order is None:
            raise LookupError(f"order {oid} has no row: its Proposed event was never projected")
        filled = order["filled_quantity"] + event.quantity
        paid = (order["average_fill_price"] or Decimal(0)) * order["filled_quantity"]
        order.update(
            status="filled" if isinstance(event, TradeOrder.Filled) else "partially_filled",
            filled_quantity=filled,
            average_fill_price=exact((paid + event.quantity * event.price) / filled),
            fill_count=order["fill_count"] + 1,
            updated_at=event.timestamp,
        )
        self._batch.update(conn, self.t.orders, oid)
        self._position(order["symbol"], Side(order["side"]), event, conn)

    def _position(self, symbol: str, side: Side, event: Any, conn: Connection) -> None:
        held = self._batch.get(conn, self.t.positions, symbol)
        if held is None:
            held = {
                "symbol": symbol,
                "quantity": Decimal(0),
                "average_cost": Decimal(0),
                "realized_pnl": Decimal(0),
                "fill_count": 0,
                "updated_at": event.timestamp,
            }
            self._batch.insert(self.t.positions, held)
        else:
            self._batch.update(conn, self.t.positions, symbol)
        signed = event.quantity if side is Side.BUY else -event.quantity
        quantity, cost, realized = apply_fill(
            held["quantity"], held["average_cost"], held["realized_pnl"], signed, event.price
        )
        held.update(
            quantity=quantity,
            average_cost=cost,
            realized_pnl=realized,
            fill_count=held["fill_count"] + 1,
            updated_at=event.timestamp,
        )


def _proposed_order(oid: str, event: Any) -> dict[str, Any]:
    return {
        "id": oid,
        "goal_id": str(event.goal_id) if event.goal_id else None,
        "symbol": event.symbol,
        "side": event.side,
        "quantity": event.quantity,
        "limit_price": event.limit_price,
        "status": "proposed",
        "filled_quantity": Decimal(0),
        "average_fill_price": None,
        "fill_count": 0,
        "broker_order_id": None,
        "risk_passed": None,
        "risk_violations": None,
        "reason": None,
        "proposed_at": event.timestamp,
        "updated_at": event.timestamp,
    }


def apply_fill(
    quantity: Decimal, average_cost: Decimal, realized: Decimal, signed: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """(quantity, average cost, realized P&L) after a fill of ``signed`` units at ``price``.

    Buys add and sells subtract. Adding to a position (or opening one) averages the cost;
    reducing it realizes the difference and keeps the cost; going through zero opens the rest
    at the fill's price.
    """
    new_quantity = quantity + signed
    if quantity == 0 or (quantity > 0) == (signed > 0):
        cost = (abs(quantity) * average_cost + abs(signed) * price) / abs(new_quantity)
        return new_quantity, exact(cost), realized
    closed = min(abs(signed), abs(quantity))
    direction = 1 if quantity > 0 else -1
    realized = exact(realized + closed * (price - average_cost) * direction)
    if new_quantity == 0:
        return new_quantity, Decimal(0), realized
    if (new_quantity > 0) != (quantity > 0):
        return new_quantity, exact(price), realized
    return new_quantity, average_cost, realized
