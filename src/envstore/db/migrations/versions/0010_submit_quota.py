"""submit quota: an index to count one user's recent builds (I11)

Revision ID: 0010_submit_quota
Revises: 0009_pack_dispatch
Create Date: 2026-12-01 19:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0010_submit_quota"
down_revision = "0009_pack_dispatch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_build_submitter_time", "build", ["submitted_by", "scheduled_on"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_build_submitter_time", table_name="build")
