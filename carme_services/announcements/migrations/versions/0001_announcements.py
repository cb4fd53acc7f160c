"""The announcements store: the notices, and the audit of every change.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade():
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        at("start"),
        at("expiry"),
        at("created_at"),
        sa.Column("created_by", sa.String(255), nullable=False),
        at("deleted_at", nullable=True),
        sa.Column("deleted_by", sa.String(255)),
        sa.PrimaryKeyConstraint("id", name="pk_announcements"),
        sa.CheckConstraint("severity IN ('info', 'warning', 'danger')", name="ck_announcements_severity"),
        sa.CheckConstraint("expiry > start", name="ck_announcements_expiry_after_start"),
    )
    op.create_index("ix_announcements_expiry", "announcements", ["expiry"])
    op.create_table(
        "announcement_audit",
        sa.Column("id", sa.Integer, nullable=False),
        at("at"),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("announcement_id", sa.Integer, nullable=False),
        sa.Column("notice", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_announcement_audit"),
        sa.CheckConstraint("action IN ('posted', 'deleted')", name="ck_announcement_audit_action"),
    )
    op.create_index("ix_announcement_audit_announcement_id", "announcement_audit", ["announcement_id"])


def downgrade():
    op.drop_index("ix_announcement_audit_announcement_id", "announcement_audit")
    op.drop_table("announcement_audit")
    op.drop_index("ix_announcements_expiry", "announcements")
    op.drop_table("announcements")
