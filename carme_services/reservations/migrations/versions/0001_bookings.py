"""The reservations store: bookings, their events, the users' feed tokens.

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
        "reservation_bookings",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        at("start_at"),
        at("end_at"),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("nodes", sa.Text, nullable=False),
        sa.Column("slurm_name", sa.String(64)),
        sa.Column("note", sa.Text, nullable=False),
        at("created_at"),
        sa.Column("created_by", sa.String(255), nullable=False),
        at("decided_at", nullable=True),
        sa.Column("decided_by", sa.String(255)),
        at("in_slurm_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reservation_bookings"),
        sa.UniqueConstraint("slurm_name", name="uq_reservation_bookings_slurm_name"),
        sa.CheckConstraint("state IN ('pending', 'approved', 'denied', 'cancelled', 'gone', 'ended')",
                           name="ck_reservation_bookings_state"),
        sa.CheckConstraint("end_at > start_at", name="ck_reservation_bookings_window"),
        sa.CheckConstraint("gpus > 0", name="ck_reservation_bookings_gpus"),
    )
    op.create_index("ix_reservation_bookings_user_name", "reservation_bookings", ["user_name"])
    op.create_index("ix_reservation_bookings_window", "reservation_bookings", ["end_at", "start_at"])
    op.create_table(
        "reservation_events",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("booking_id", sa.Integer, nullable=False),
        at("at"),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reservation_events"),
        sa.ForeignKeyConstraint(["booking_id"], ["reservation_bookings.id"], name="fk_reservation_events_booking_id",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_reservation_events_booking_id", "reservation_events", ["booking_id"])
    op.create_table(
        "reservation_feed_tokens",
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        at("created_at"),
        sa.PrimaryKeyConstraint("user_name", name="pk_reservation_feed_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_reservation_feed_tokens_token_sha256"),
    )


def downgrade():
    op.drop_table("reservation_feed_tokens")
    op.drop_index("ix_reservation_events_booking_id", "reservation_events")
    op.drop_table("reservation_events")
    op.drop_index("ix_reservation_bookings_window", "reservation_bookings")
    op.drop_index("ix_reservation_bookings_user_name", "reservation_bookings")
    op.drop_table("reservation_bookings")
