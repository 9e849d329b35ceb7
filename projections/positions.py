"""Where every projection keeps its position, state and generation in the views database.

The SQL runner, the knowledge runner, rebuild/verify and the status commands all read and write
these two rows per projection; the tables are created by the migrations (projections/migrations)
and declared here for the code that uses them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

RUNNING, STALLED = "running", "stalled"

# Log positions outgrow int4 (2**31) on a busy log. SQLite's INTEGER is already 64-bit, and an
# INTEGER PRIMARY KEY there is the rowid itself, so SQLite keeps it.
POSITION = BigInteger().with_variant(Integer(), "sqlite")

runtime_metadata = MetaData()

projection_positions = Table(
    "projection_positions",
    runtime_metadata,
    Column("name", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("position", POSITION, nullable=False),
    Column("state", String(20), nullable=False),
    Column("error", Text),
    Column("error_position", POSITION),
    Column("skipped", Text, nullable=False, default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which generation of a projection's tables is live, and which one a rebuild or verify is
# building. Kept apart from the position row so that building never contends with the runner.
projection_generations = Table(
    "projection_generations",
    runtime_metadata,
    Column("name", String(100), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("building", Integer),
    Column("purpose", String(20)),
    Column("building_position", POSITION),
    Column("building_started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def register_position(conn: Connection, name: str, version: int) -> None:
    """The position row of a new projection: at 0, running. Left alone when it exists, so
    several processes may start at once."""
    insert_missing(
        conn,
        projection_positions,
        name=name,
        version=version,
        position=0,
        state=RUNNING,
        skipped="",
        updated_at=utc_now(),
    )


def set_state(
    conn: Connection, name: str, state: str, error: str | None, error_position: int | None
) -> None:
    """Stall a projection at a position with its error, or (RUNNING, None, None) resume it."""
    conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == name)
        .values(state=state, error=error, error_position=error_position, updated_at=utc_now())
    )


def locked_row(conn: Connection, name: str) -> Row[Any]:
    """The projection's position row, write-locked until ``conn`` commits.

    The runner claims this row before applying a batch, so holding it pauses the runner of
    ``name`` in every process (and any JetStream feed) without stopping it.
    """
    touched = conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == name)
        .values(updated_at=utc_now())
    )
    if touched.rowcount != 1:
        raise LookupError(f"projection {name} has no position row: run setup() first")
    return conn.execute(
        select(projection_positions).where(projection_positions.c.name == name)
    ).one()


def insert_missing(conn: Connection, table: Table, **values: Any) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    conn.execute(statement)


def utc_now() -> datetime:
    return datetime.now(UTC)
