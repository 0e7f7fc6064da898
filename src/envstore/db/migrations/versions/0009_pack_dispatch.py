"""pack dispatch: when a pack job was last handed to the broker (artifact_job.dispatched_on)

Revision ID: 0009_pack_dispatch
Revises: 0008_artifact_jobs
Create Date: 2026-12-01 19:00:00.000000

The distributed reaper sends a QUEUED pack job again when it was never sent (the broker was
down when the build completed) or sent long ago, as it does for builds (0007). A nullable
column with no default: no table rewrite on PostgreSQL, so it runs while workers pack.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_pack_dispatch"
down_revision = "0008_artifact_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifact_job") as batch:
        batch.add_column(sa.Column("dispatched_on", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifact_job") as batch:
        batch.drop_column("dispatched_on")
