"""The cockpit store: the audit of the admins' actions (stop, drain, resume).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "cockpit_actions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cockpit_actions"),
        sa.CheckConstraint("action IN ('stop', 'drain', 'resume')", name="ck_cockpit_actions_action"),
        sa.CheckConstraint("outcome IN ('done', 'refused', 'failed')", name="ck_cockpit_actions_outcome"),
    )
    op.create_index("ix_cockpit_actions_at", "cockpit_actions", ["at"])
    op.create_index("ix_cockpit_actions_actor", "cockpit_actions", ["actor"])
    op.create_index("ix_cockpit_actions_target", "cockpit_actions", ["target"])


def downgrade():
    op.drop_index("ix_cockpit_actions_target", "cockpit_actions")
    op.drop_index("ix_cockpit_actions_actor", "cockpit_actions")
    op.drop_index("ix_cockpit_actions_at", "cockpit_actions")
    op.drop_table("cockpit_actions")
