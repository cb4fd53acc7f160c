"""The SSH store: users' public keys, the log of SSH sessions.

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
        "ssh_keys",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("algorithm", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        at("added_at"),
        at("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ssh_keys"),
        sa.UniqueConstraint("user_name", "fingerprint", name="uq_ssh_keys_user_name"),
    )
    op.create_index("ix_ssh_keys_user_name", "ssh_keys", ["user_name"])
    op.create_table(
        "ssh_sessions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(255), nullable=False),
        at("started_at"),
        at("ended_at", nullable=True),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ssh_sessions"),
    )
    op.create_index("ix_ssh_sessions_user_name", "ssh_sessions", ["user_name"])
    op.create_index("ix_ssh_sessions_started_at", "ssh_sessions", ["started_at"])


def downgrade():
    op.drop_table("ssh_sessions")
    op.drop_table("ssh_keys")
