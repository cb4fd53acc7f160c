"""The quota store: overrides, projects, their managers and members, membership requests, the audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("quota_overrides", "quota_projects", "quota_project_managers", "quota_project_members",
          "quota_membership_requests", "quota_audit")


def user(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.String(255), nullable=kw.pop("nullable", False), **kw)


def at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["project"], ["quota_projects.name"], name=f"fk_{table}_project", ondelete="CASCADE")


def upgrade():
    op.create_table(
        "quota_overrides",
        user("user_name"),
        sa.Column("gpus_per_job", sa.Integer),
        sa.Column("max_servers", sa.Integer),
        sa.Column("gpu_hours", sa.Double),
        sa.Column("max_runtime_minutes", sa.Integer),
        sa.Column("jobs_per_day", sa.Integer),
        sa.Column("priority", sa.Integer),
        at("updated_at"),
        user("updated_by"),
        sa.PrimaryKeyConstraint("user_name", name="pk_quota_overrides"),
    )
    op.create_table(
        "quota_projects",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("gpus_at_once", sa.Integer),
        sa.Column("gpus_per_job", sa.Integer),
        sa.Column("max_runtime_minutes", sa.Integer),
        sa.Column("gpu_hours", sa.Double),
        sa.Column("partitions", sa.Text, nullable=False),
        at("created_at"),
        user("created_by"),
        sa.PrimaryKeyConstraint("name", name="pk_quota_projects"),
    )
    op.create_table(
        "quota_project_managers",
        sa.Column("project", sa.String(32), nullable=False),
        user("user_name"),
        sa.PrimaryKeyConstraint("project", "user_name", name="pk_quota_project_managers"),
        project_fk("quota_project_managers"),
    )
    op.create_table(
        "quota_project_members",
        sa.Column("project", sa.String(32), nullable=False),
        user("user_name"),
        user("approved_by"),
        at("approved_at"),
        sa.PrimaryKeyConstraint("project", "user_name", name="pk_quota_project_members"),
        project_fk("quota_project_members"),
    )
    op.create_index("ix_quota_project_members_user_name", "quota_project_members", ["user_name"])
    op.create_table(
        "quota_membership_requests",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("project", sa.String(32), nullable=False),
        user("user_name"),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        user("decided_by", nullable=True),
        at("decided_at", nullable=True),
        at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_quota_membership_requests"),
        project_fk("quota_membership_requests"),
        sa.CheckConstraint("state IN ('pending', 'approved', 'denied')", name="ck_quota_membership_requests_state"),
    )
    # at most one pending request per (project, user)
    op.create_index("ix_quota_membership_requests_pending", "quota_membership_requests", ["project", "user_name"],
                    unique=True, sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"))
    op.create_table(
        "quota_audit",
        sa.Column("id", sa.Integer, nullable=False),
        at("at"),
        user("actor"),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("field", sa.String(64)),
        sa.Column("old_value", sa.Text),
        sa.Column("new_value", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_quota_audit"),
    )
    op.create_index("ix_quota_audit_at", "quota_audit", ["at"])
    op.create_index("ix_quota_audit_target", "quota_audit", ["target"])


def downgrade():
    for table in reversed(TABLES):
        op.drop_table(table)  # with its indexes
