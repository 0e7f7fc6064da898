"""blob_hold: per-blob row locks that order garbage collection against publishing (D6)

Revision ID: 0003_blob_hold
Revises: 0002
Create Date: 2026-12-01 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_blob_hold"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing blobs need no row: the collector creates one (and holds it) before it deletes.
    op.create_table(
        "blob_hold",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("held_on", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("blob_hold")
