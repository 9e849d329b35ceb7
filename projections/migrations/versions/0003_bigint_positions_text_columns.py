"""Positions (and document sizes and counts) are bigint; free text the domain does not bound to
a column's length is TEXT.

A log passes 2**31 positions on a busy store, and an int4 column then stalls the view (and a
query such as ``timeline?after=2147483648`` fails). A value the domain accepted (an actor name,
an Idempotency-Key turned command id, a broker's order id) must never stall a view, so the
columns that hold such text take any length.

Postgres rewrites a table whose integer column widens (once per table here: the columns of one
table change in one statement); varchar to text is a catalogue change only. SQLite's INTEGER is
already 64-bit, so there only the text columns change (the table is copied, as SQLite alters).

``decisions`` is keyed by its event's position instead of the decision id: the domain allows a
client's decision id again on another goal, and such a pair stalled the view.

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
        _rekey_postgres("position")
    else:
        for table, columns in TEXT.items():
            with op.batch_alter_table(table) as batch:
                for column, length in columns.items():
                    batch.alter_column(column, type_=sa.Text(), existing_type=sa.String(length))
        _rekey_sqlite("position")
    op.create_index("ix_decisions_decision_id", "decisions", ["decision_id"])


def downgrade() -> None:
    """Back to the old types: fails (changing nothing) if a value no longer fits them."""
    op.drop_index("ix_decisions_decision_id", table_name="decisions")
    if op.get_bind().dialect.name == "postgresql":
        _rekey_postgres("decision_id")
        _postgres(text_type=None, int_type="integer")
        return
    for table, columns in TEXT.items():
        with op.batch_alter_table(table) as batch:
            for column, length in columns.items():
                batch.alter_column(column, type_=sa.String(length), existing_type=sa.Text())
    _rekey_sqlite("decision_id")


def _rekey_postgres(key: str) -> None:
    """decisions is keyed by its event's position: a decision id is unique only in its goal."""
    primary = str(sa.inspect(op.get_bind()).get_pk_constraint("decisions")["name"])
    op.execute(f"ALTER TABLE decisions DROP CONSTRAINT {_quote(primary)}")
    op.execute(f"ALTER TABLE decisions ADD PRIMARY KEY ({_quote(key)})")


def _rekey_sqlite(key: str) -> None:
    """SQLite changes a primary key by copying the table into its new shape."""
    shape = sa.Table(
        "decisions",
        sa.MetaData(),
        sa.Column("decision_id", sa.String(36), nullable=False, primary_key=key == "decision_id"),
        sa.Column("goal_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("context_ids", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, primary_key=key == "position"),
        sa.Index("ix_decisions_goal_id", "goal_id"),
    )
    with op.batch_alter_table("decisions", copy_from=shape, recreate="always"):
        pass


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
