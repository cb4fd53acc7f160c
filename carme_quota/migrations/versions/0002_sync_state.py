"""What the sync applied to SLURM last: the base of its drift rule (carme_quota.sacctmgr).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "quota_sync_state",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("applied", sa.Text, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quota_sync_state"),
    )


def downgrade():
    op.drop_table("quota_sync_state")
