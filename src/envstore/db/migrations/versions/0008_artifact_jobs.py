"""artifact jobs: archives and images packed after a build is COMPLETED (issue 11)

Revision ID: 0008_artifact_jobs
Revises: 0007_scaleout
Create Date: 2026-12-01 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_artifact_jobs"
down_revision = "0007_scaleout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_job",
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("pack_key", sa.String(length=64), nullable=True),
        sa.Column("info", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_on", sa.DateTime(), nullable=True),
        sa.Column("created_on", sa.DateTime(), nullable=False),
        sa.Column("ended_on", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["build_id"], ["build.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("build_id"),
    )
    op.create_index("ix_artifact_job_status", "artifact_job", ["status"], unique=False)
    op.create_index("ix_artifact_job_pack_key", "artifact_job", ["pack_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_artifact_job_pack_key", table_name="artifact_job")
    op.drop_index("ix_artifact_job_status", table_name="artifact_job")
    op.drop_table("artifact_job")
