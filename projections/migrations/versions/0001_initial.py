"""The views as they were before migrations: goals, decisions, confirmations, effects, jobs,
job fires, the audit trail and the projection positions.

Databases created before migrations existed already hold these tables (made by create_all):
only missing tables are created, so such a database is adopted as it stands.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(36)
TIME = sa.DateTime(timezone=True)


def _create(name: str, *columns: sa.Column[object], indexes: dict[str, list[str]]) -> None:
    if sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *columns)
    for index, index_columns in indexes.items():
        op.create_index(index, name, index_columns)


def upgrade() -> None:
    _create(
        "goals",
        sa.Column("id", ID, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("latest_decision_id", ID),
        sa.Column("latest_action", sa.String(200)),
        sa.Column("outcome", sa.Text),
        sa.Column("submitted_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        indexes={"ix_goals_status": ["status"]},
    )
    _create(
        "decisions",
        sa.Column("decision_id", ID, primary_key=True),
        sa.Column("goal_id", ID, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("context_ids", sa.JSON, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        indexes={"ix_decisions_goal_id": ["goal_id"]},
    )
    _create(
        "confirmations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("goal_id", ID, nullable=False),
        sa.Column("decision_id", ID, nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("hazard", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", TIME),
        sa.Column("reason", sa.Text),
        indexes={
            "ix_confirmations_goal_id": ["goal_id"],
            "confirmations_status_deadline": ["status", "expires_at"],
        },
    )
    _create(
        "effects",
        sa.Column("id", ID, primary_key=True),
        sa.Column("confirmation_id", ID, nullable=False, unique=True),
        sa.Column("goal_id", ID, nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("happened", sa.Boolean),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        indexes={"ix_effects_goal_id": ["goal_id"], "ix_effects_status": ["status"]},
    )
    _create(
        "jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("trigger", sa.JSON, nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("misfire_policy", sa.String(20), nullable=False),
        sa.Column("max_catch_up", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("scheduled_at", TIME, nullable=False),
        sa.Column("last_scheduled_for", TIME),
        sa.Column("last_outcome", sa.String(20)),
        sa.Column("fired_count", sa.Integer, nullable=False),
        sa.Column("succeeded_count", sa.Integer, nullable=False),
        sa.Column("failed_count", sa.Integer, nullable=False),
        sa.Column("missed_count", sa.Integer, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        indexes={"ix_jobs_status": ["status"]},
    )
    _create(
        "job_fires",
        sa.Column("id", ID, primary_key=True),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("scheduled_for", TIME, nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("next_retry_at", TIME),
        sa.Column("updated_at", TIME, nullable=False),
        indexes={
            "ix_job_fires_status": ["status"],
            "job_fires_job_time": ["job_id", "scheduled_for"],
        },
    )
    _create(
        "audit",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("event_id", ID, nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("aggregate_id", ID, nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("correlation_id", sa.String(100), nullable=False),
        sa.Column("causation_id", sa.String(100), nullable=False),
        sa.Column("command_id", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(250), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        indexes={
            "ix_audit_aggregate_id": ["aggregate_id"],
            "ix_audit_correlation_id": ["correlation_id"],
        },
    )
    _create(
        "projection_positions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_position", sa.Integer),
        sa.Column("skipped", sa.Text, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        indexes={},
    )


def downgrade() -> None:
    for name in (
        "projection_positions",
        "audit",
        "job_fires",
        "jobs",
        "effects",
        "confirmations",
        "decisions",
        "goals",
    ):
        op.drop_table(name)
