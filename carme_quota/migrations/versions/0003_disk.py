"""Disk and scratch limits (overrides, project templates) and the disk pass's last reading.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("quota_overrides") as t:
        t.add_column(sa.Column("scratch_gib", sa.Double, nullable=True))
        t.add_column(sa.Column("disk_gib", sa.Double, nullable=True))
        t.add_column(sa.Column("disk_inodes", sa.BigInteger, nullable=True))
    with op.batch_alter_table("quota_projects") as t:
        t.add_column(sa.Column("disk_gib", sa.Double, nullable=True))
        t.add_column(sa.Column("disk_inodes", sa.BigInteger, nullable=True))
    op.create_table(
        "quota_disk_usage",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("id", sa.BigInteger, nullable=False),
        sa.Column("used_bytes", sa.BigInteger, nullable=False),
        sa.Column("limit_bytes", sa.BigInteger, nullable=True),
        sa.Column("used_inodes", sa.BigInteger, nullable=True),
        sa.Column("limit_inodes", sa.BigInteger, nullable=True),
        sa.Column("exact", sa.Boolean, nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_quota_disk_usage"),
    )


def downgrade():
    op.drop_table("quota_disk_usage")
    with op.batch_alter_table("quota_projects") as t:
        t.drop_column("disk_inodes")
        t.drop_column("disk_gib")
    with op.batch_alter_table("quota_overrides") as t:
        t.drop_column("disk_inodes")
        t.drop_column("disk_gib")
        t.drop_column("scratch_gib")
