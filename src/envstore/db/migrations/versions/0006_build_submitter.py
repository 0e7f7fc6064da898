"""build_submitter: who submitted each build (the web UI's build history shows it)

Revision ID: 0006_build_submitter
Revises: 0005_governance
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_build_submitter"
down_revision = "0005_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Builds made before this revision keep NULL: nobody recorded who submitted them.
    with op.batch_alter_table("build") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build") as batch:
        batch.drop_column("submitted_by")
