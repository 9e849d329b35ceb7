"""Job-fired confirmations: a job's fire asks the action gate like a goal's decision does.

confirmations.goal_id and decision_id become nullable, with job_id and fire_id beside them;
effects.goal_id becomes nullable (an effect of a job's fire has no goal); jobs.overlap (what a
scheduled time does while the previous fire is still running); job_fires.confirmation_id (which
confirmation a fire requested).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    with op.batch_alter_table("confirmations") as table:
        table.alter_column("goal_id", existing_type=ID, nullable=True)
        table.alter_column("decision_id", existing_type=ID, nullable=True)
        table.add_column(sa.Column("job_id", ID))
        table.add_column(sa.Column("fire_id", ID))
    with op.batch_alter_table("effects") as table:
        table.alter_column("goal_id", existing_type=ID, nullable=True)
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("overlap", sa.String(20), nullable=False, server_default="skip"))
    with op.batch_alter_table("job_fires") as table:
        table.add_column(sa.Column("confirmation_id", ID))


def downgrade() -> None:
    with op.batch_alter_table("job_fires") as table:
        table.drop_column("confirmation_id")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("overlap")
    with op.batch_alter_table("effects") as table:
        table.alter_column("goal_id", existing_type=ID, nullable=False)
    with op.batch_alter_table("confirmations") as table:
        table.drop_column("fire_id")
        table.drop_column("job_id")
        table.alter_column("decision_id", existing_type=ID, nullable=False)
        table.alter_column("goal_id", existing_type=ID, nullable=False)
