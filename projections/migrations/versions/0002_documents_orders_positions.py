"""Documents, trade orders and positions; jobs.next_fire_at; indexes shaped for the queries the
CLI and API make; the registry of live generations that blue/green rebuilds switch.

Existing rows of jobs get no next_fire_at here: ``janus projections rebuild relational`` (which
the status's version column suggests after this upgrade) computes it from the log.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from projections.relational.tables import ExactDecimal

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(36)
TIME = sa.DateTime(timezone=True)

# (table, old index and its columns, new index and its columns): queries filter by status (or
# correlation, or job) and sort by time.
REPLACED = [
    (
        "goals",
        "ix_goals_status",
        ["status"],
        "ix_goals_status_submitted_at",
        ["status", "submitted_at"],
    ),
    (
        "confirmations",
        "confirmations_status_deadline",
        ["status", "expires_at"],
        "ix_confirmations_status_expires_at",
        ["status", "expires_at"],
    ),
    (
        "effects",
        "ix_effects_status",
        ["status"],
        "ix_effects_status_started_at",
        ["status", "started_at"],
    ),
    (
        "job_fires",
        "job_fires_job_time",
        ["job_id", "scheduled_for"],
        "ix_job_fires_job_id_scheduled_for",
        ["job_id", "scheduled_for"],
    ),
    (
        "audit",
        "ix_audit_correlation_id",
        ["correlation_id"],
        "ix_audit_correlation_id_position",
        ["correlation_id", "position"],
    ),
]


def upgrade() -> None:
    for table, old, _, new, columns in REPLACED:
        op.drop_index(old, table_name=table)
        op.create_index(new, table, columns)
    op.create_index("ix_audit_recorded_at", "audit", ["recorded_at"])
    op.add_column("jobs", sa.Column("next_fire_at", TIME))
    op.create_index("ix_jobs_status_next_fire_at", "jobs", ["status", "next_fire_at"])
    _documents()
    _orders()
    _positions()
    _generations()


def _documents() -> None:
    op.create_table(
        "documents",
        sa.Column("id", ID, primary_key=True),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("blob_key", sa.Text),
        sa.Column("text_chars", sa.Integer),
        sa.Column("entity_count", sa.Integer),
        sa.Column("extractor", sa.String(200)),
        sa.Column("chunk_count", sa.Integer),
        sa.Column("embedding_model", sa.String(200)),
        sa.Column("failed_stage", sa.String(100)),
        sa.Column("error", sa.Text),
        sa.Column("registered_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_documents_status_registered_at", "documents", ["status", "registered_at"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])


def _orders() -> None:
    op.create_table(
        "orders",
        sa.Column("id", ID, primary_key=True),
        sa.Column("goal_id", ID),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", ExactDecimal, nullable=False),
        sa.Column("limit_price", ExactDecimal),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_quantity", ExactDecimal, nullable=False),
        sa.Column("average_fill_price", ExactDecimal),
        sa.Column("fill_count", sa.Integer, nullable=False),
        sa.Column("broker_order_id", sa.String(200)),
        sa.Column("risk_passed", sa.Boolean),
        sa.Column("risk_violations", sa.JSON),
        sa.Column("reason", sa.Text),
        sa.Column("proposed_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_orders_status_proposed_at", "orders", ["status", "proposed_at"])
    op.create_index("ix_orders_symbol", "orders", ["symbol"])
    op.create_index("ix_orders_goal_id", "orders", ["goal_id"])


def _positions() -> None:
    op.create_table(
        "positions",
        sa.Column("symbol", sa.String(16), primary_key=True),
        sa.Column("quantity", ExactDecimal, nullable=False),
        sa.Column("average_cost", ExactDecimal, nullable=False),
        sa.Column("realized_pnl", ExactDecimal, nullable=False),
        sa.Column("fill_count", sa.Integer, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def _generations() -> None:
    op.create_table(
        "projection_generations",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("building", sa.Integer),
        sa.Column("purpose", sa.String(20)),
        sa.Column("building_position", sa.Integer),
        sa.Column("building_started_at", TIME),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for name in ("projection_generations", "positions", "orders", "documents"):
        op.drop_table(name)
    op.drop_index("ix_jobs_status_next_fire_at", table_name="jobs")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("next_fire_at")
    op.drop_index("ix_audit_recorded_at", table_name="audit")
    for table, old, columns, new, _ in REPLACED:
        op.drop_index(new, table_name=table)
        op.create_index(old, table, columns)
