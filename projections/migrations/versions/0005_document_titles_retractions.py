"""Documents: title and retraction (reason, time); the blob key is always known; the pipeline
columns go (whether a view chunked, embedded or graphed a document is that view's state, and the
events that fed them are gone).

Existing rows get the titles and blob keys `Document.Registered` v1 upcasts to (the source's
last segment, the content address), and a retracted row keeps its reason (the old ``error``)
with its last update as the retraction time. ``janus projections rebuild relational`` (which the
status's version column suggests after this upgrade) recomputes all of it from the log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.document import content_key, title_from

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
# The columns of the old pipeline-status events, as 0002 and 0003 left them.
PIPELINE = [
    ("text_chars", sa.BigInteger),
    ("entity_count", sa.Integer),
    ("extractor", sa.Text),
    ("chunk_count", sa.BigInteger),
    ("embedding_model", sa.Text),
    ("failed_stage", sa.Text),
    ("error", sa.Text),
]
documents = sa.table(
    "documents",
    sa.column("id", sa.String),
    sa.column("source_uri", sa.Text),
    sa.column("sha256", sa.String),
    sa.column("status", sa.String),
    sa.column("title", sa.Text),
    sa.column("blob_key", sa.Text),
    sa.column("error", sa.Text),
    sa.column("retraction_reason", sa.Text),
    sa.column("retracted_at", TIME),
    sa.column("updated_at", TIME),
)


def upgrade() -> None:
    with op.batch_alter_table("documents") as table:
        table.add_column(sa.Column("title", sa.Text))
        table.add_column(sa.Column("retraction_reason", sa.Text))
        table.add_column(sa.Column("retracted_at", TIME))
    _fill_in()
    with op.batch_alter_table("documents") as table:
        table.alter_column("title", existing_type=sa.Text, nullable=False)
        table.alter_column("blob_key", existing_type=sa.Text, nullable=False)
        for name, _ in PIPELINE:
            table.drop_column(name)


def _fill_in() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(documents.c.id, documents.c.source_uri, documents.c.sha256, documents.c.blob_key)
    ).all()
    for row in rows:
        conn.execute(
            documents.update()
            .where(documents.c.id == row.id)
            .values(
                title=title_from(row.source_uri),
                blob_key=row.blob_key or content_key(row.sha256),
            )
        )
    conn.execute(
        documents.update()
        .where(documents.c.status == "retracted")
        .values(retraction_reason=documents.c.error, retracted_at=documents.c.updated_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("documents") as table:
        for name, kind in PIPELINE:
            table.add_column(sa.Column(name, kind))
        table.alter_column("blob_key", existing_type=sa.Text, nullable=True)
    op.get_bind().execute(
        documents.update()
        .where(documents.c.status == "retracted")
        .values(error=documents.c.retraction_reason)
    )
    with op.batch_alter_table("documents") as table:
        for name in ("retracted_at", "retraction_reason", "title"):
            table.drop_column(name)
