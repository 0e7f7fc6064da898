"""governance: setting history, the audit log, the effective spec of each build

Revision ID: 0005_governance
Revises: 0004_login_sessions
Create Date: 2026-12-01 15:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_governance"
down_revision = "0004_login_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "setting_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("old_value", sa.JSON(), nullable=True),
        sa.Column("new_value", sa.JSON(), nullable=True),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_on", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_setting_change_level", "setting_change", ["namespace", "environment", "id"])
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_on", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=True),
        sa.Column("environment", sa.String(length=255), nullable=True),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_time", "audit_event", ["occurred_on"])
    op.create_index("ix_audit_namespace", "audit_event", ["namespace", "occurred_on"])
    with op.batch_alter_table("build") as batch:
        batch.add_column(sa.Column("effective_spec", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("policy_additions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build") as batch:
        batch.drop_column("policy_additions")
        batch.drop_column("effective_spec")
    op.drop_index("ix_audit_namespace", table_name="audit_event")
    op.drop_index("ix_audit_time", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index("ix_setting_change_level", table_name="setting_change")
    op.drop_table("setting_change")
