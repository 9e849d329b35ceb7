"""Alembic migrations for the views database, configured in code (no alembic.ini).

``migrate(engine)`` brings the schema to head and is called by every process as it starts, so it
must be safe when several start at once: on Postgres the upgrade runs under a transaction-level
advisory lock, on SQLite under ``BEGIN IMMEDIATE`` (the database write lock). Whoever comes
second waits, then finds the schema at head and does nothing.

Index and constraint names on the live tables carry the generation they were built in (see
projections/relational/tables.py); a migration that changes an existing index should find it by
its columns, not by name.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

VERSION_TABLE = "projection_schema_version"
SCRIPTS = Path(__file__).resolve().parent
_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"janus-views-migrations").digest()[:8], "big", signed=True
)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "projections/migrations/versions holds no revision"
    return revision


def current(conn: Connection) -> set[str]:
    if not inspect(conn).has_table(VERSION_TABLE):
        return set()
    return set(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the views schema to ``revision``; a cheap no-op when it is already at head."""
    if revision == "head":
        with engine.connect() as conn:
            if current(conn) == {head()}:
                return
    with engine.begin() as conn:
        _serialize(conn)
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        _serialize(conn)
        command.downgrade(alembic_config(conn), revision)


def _serialize(conn: Connection) -> None:
    """Hold the schema until this transaction ends, so concurrent starts upgrade one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    else:
        # pysqlite would only begin before DML, leaving the DDL to race in autocommit.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
