"""Alembic environment: always online, on the connection ``migrate()`` opened and locked."""

from __future__ import annotations

from alembic import context

from projections.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the views migrations through projections.migrations.migrate(engine)")

# The caller's transaction (holding the migration lock) spans every revision and commits them.
context.configure(connection=connection, version_table=VERSION_TABLE, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
