"""scale-out: when a build was last handed to the broker (build.dispatched_on)

Revision ID: 0007_scaleout
Revises: 0006_build_submitter
Create Date: 2026-12-01 15:30:00.000000

A nullable column with no default: adding it takes no table rewrite on PostgreSQL, so it runs
while workers are building (docs/deploy.md, schema upgrades).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_scaleout"
down_revision = "0006_build_submitter"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("build") as batch:
        batch.add_column(sa.Column("dispatched_on", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build") as batch:
        batch.drop_column("dispatched_on")
