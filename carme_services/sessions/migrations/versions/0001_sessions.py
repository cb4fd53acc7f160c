"""The sessions store: the choices SLURM does not know (per job id), the extensions' audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade():
    op.create_table(
        "session_choices",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        at("seen_at"),
        sa.PrimaryKeyConstraint("job_id", name="pk_session_choices"),
    )
    op.create_index("ix_session_choices_server", "session_choices", ["user_name", "server_name"])
    op.create_index("ix_session_choices_seen_at", "session_choices", ["seen_at"])
    op.create_table(
        "session_extensions",
        sa.Column("id", sa.Integer, nullable=False),
        at("at"),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("from_minutes", sa.Integer),
        sa.Column("to_minutes", sa.Integer),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_extensions"),
        sa.CheckConstraint("outcome IN ('extended', 'refused', 'failed')", name="ck_session_extensions_outcome"),
    )
    op.create_index("ix_session_extensions_user_name", "session_extensions", ["user_name"])
    op.create_index("ix_session_extensions_job_id", "session_extensions", ["job_id"])


def downgrade():
    op.drop_index("ix_session_extensions_job_id", "session_extensions")
    op.drop_index("ix_session_extensions_user_name", "session_extensions")
    op.drop_table("session_extensions")
    op.drop_index("ix_session_choices_seen_at", "session_choices")
    op.drop_index("ix_session_choices_server", "session_choices")
    op.drop_table("session_choices")
