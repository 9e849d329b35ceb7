"""Positions (and document sizes and counts) are bigint; free text the domain does not bound to
a column's length is TEXT.

A log passes 2**31 positions on a busy store, and an int4 column then stalls the view (and a
query such as ``timeline?after=2147483648`` fails). A value the domain accepted (an actor name,
an Idempotency-Key turned command id, a broker's order id) must never stall a view, so the
columns that hold such text take any length.

Postgres rewrites a table whose integer column widens (once per table here: the columns of one
table change in one statement); varchar to text is a catalogue change only. SQLite's INTEGER is
already 64-bit, so there only the text columns change (the table is copied, as SQLite alters).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# table -> column -> its length before this revision
TEXT: dict[str, dict[str, int]] = {
    "goals": {"latest_action": 200},
    "confirmations": {"decided_by": 200},
    "effects": {"action": 200},
    "audit": {
        "correlation_id": 100,
        "causation_id": 100,
        "command_id": 200,
        "actor": 250,
        "node_id": 64,
    },
    "documents": {"extractor": 200, "embedding_model": 200, "failed_stage": 100},
    "orders": {"broker_order_id": 200},
}

BIGINT: dict[str, list[str]] = {
    "audit": ["position"],
    "decisions": ["position"],
    "documents": ["size_bytes", "text_chars", "chunk_count"],
    "projection_positions": ["position", "error_position"],
    "projection_generations": ["building_position"],
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres(text_type="text", int_type="bigint")
        return
    for table, columns in TEXT.items():
        with op.batch_alter_table(table) as batch:
            for column, length in columns.items():
                batch.alter_column(column, type_=sa.Text(), existing_type=sa.String(length))


def downgrade() -> None:
    """Back to the old types: fails (changing nothing) if a value no longer fits them."""
    if op.get_bind().dialect.name == "postgresql":
        _postgres(text_type=None, int_type="integer")
        return
    for table, columns in TEXT.items():
        with op.batch_alter_table(table) as batch:
            for column, length in columns.items():
                batch.alter_column(column, type_=sa.String(length), existing_type=sa.Text())


def _postgres(text_type: str | None, int_type: str) -> None:
    """One ALTER TABLE per table, so a table is rewritten at most once."""
    for table in dict.fromkeys([*TEXT, *BIGINT]):
        changes = [
            f"ALTER COLUMN {_quote(column)} TYPE {text_type or f'varchar({length})'}"
            for column, length in TEXT.get(table, {}).items()
        ]
        changes += [
            f"ALTER COLUMN {_quote(column)} TYPE {int_type}" for column in BIGINT.get(table, [])
        ]
        op.execute(f"ALTER TABLE {_quote(table)} {', '.join(changes)}")


def _quote(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)
