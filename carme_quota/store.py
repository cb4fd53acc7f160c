"""Carme's store: users' limit overrides, projects, their managers and members, membership requests, the audit.

SQLAlchemy 2 models (tables `quota_*`, created by ONE Alembic tree, `carme_quota/migrations`,
recorded in `alembic_version_carme_quota`) and `QuotaStore`, the repository every caller goes
through. Only valid values are stored: limits pass `carme_quota.limits.check_limit`, names their
patterns, and every refusal is a `StoreError` naming the field or the thing, raised before
anything is written. Each change writes its audit rows in the same transaction. All times are
timezone-aware UTC, on SQLite too.

The store keeps what admins and managers decided; SLURM stays the ledger of usage and of what is
enforced (the sync writes these decisions to SLURM's associations).

    store = QuotaStore(database("postgresql+psycopg://carme@db/carme"))   # or sqlite:////var/lib/...
    store.db.upgrade()
    store.set_override("alice", Limits(gpus_per_job=4), actor="admin")
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from carme_core.db import ServiceDatabase, declarative_base

from .disk import DiskUse
from .limits import LIMIT_FIELDS, LimitError, Limits, ProjectTemplate, check_limit

SERVICE = "carme-quota"  # version table alembic_version_carme_quota
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SYSTEM_ACTOR = "carme-quota"  # the actor of the service's own changes
PROJECT_NAME = re.compile(r"[a-z][a-z0-9_-]{1,31}")  # a SLURM account name
USER_NAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")  # a hub user name: no spaces or control characters
PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MESSAGE_MAX = DESCRIPTION_MAX = 500
STATES = ("pending", "approved", "denied")
#: template field -> the limit whose rule it follows
TEMPLATE_LIMITS = {"gpus_at_once": "gpus_per_job", "gpus_per_job": "gpus_per_job",
                   "max_runtime_minutes": "max_runtime_minutes", "gpu_hours": "gpu_hours",
                   "disk_gib": "disk_gib", "disk_inodes": "disk_inodes"}


class StoreError(ValueError):
    """A change or a look-up was refused; str() names the field or the thing."""


def database(url: str) -> ServiceDatabase:
    """The quota store's database at `url` (an SQLAlchemy URL), with its own migrations."""
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


# --- the tables ----------------------------------------------------------------------------------

Base = declarative_base("QuotaBase", {float: sa.Double()})


def _project_fk() -> Any:
    return mapped_column(sa.String(32), sa.ForeignKey("quota_projects.name", ondelete="CASCADE"), primary_key=True)


class OverrideRow(Base):
    __tablename__ = "quota_overrides"
    user_name: Mapped[str] = mapped_column(primary_key=True)
    gpus_per_job: Mapped[int | None]
    max_servers: Mapped[int | None]
    gpu_hours: Mapped[float | None]
    max_runtime_minutes: Mapped[int | None]
    jobs_per_day: Mapped[int | None]
    priority: Mapped[int | None]
    scratch_gib: Mapped[float | None]
    disk_gib: Mapped[float | None]
    disk_inodes: Mapped[int | None] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str]


class ProjectRow(Base):
    __tablename__ = "quota_projects"
    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    description: Mapped[str] = mapped_column(sa.String(DESCRIPTION_MAX))
    gpus_at_once: Mapped[int | None]
    gpus_per_job: Mapped[int | None]
    max_runtime_minutes: Mapped[int | None]
    gpu_hours: Mapped[float | None]
    disk_gib: Mapped[float | None]
    disk_inodes: Mapped[int | None] = mapped_column(sa.BigInteger)
    partitions: Mapped[str] = mapped_column(sa.Text)  # a JSON list of partition names
    created_at: Mapped[datetime]
    created_by: Mapped[str]


class ManagerRow(Base):
    __tablename__ = "quota_project_managers"
    project: Mapped[str] = _project_fk()
    user_name: Mapped[str] = mapped_column(primary_key=True)


class MemberRow(Base):
    __tablename__ = "quota_project_members"
    project: Mapped[str] = _project_fk()
    user_name: Mapped[str] = mapped_column(primary_key=True, index=True)
    approved_by: Mapped[str]
    approved_at: Mapped[datetime]


class RequestRow(Base):
    __tablename__ = "quota_membership_requests"
    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'approved', 'denied')", name="state"),
        # at most one pending request per (project, user)
        sa.Index("ix_quota_membership_requests_pending", "project", "user_name", unique=True,
                 sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(sa.String(32), sa.ForeignKey("quota_projects.name", ondelete="CASCADE"))
    user_name: Mapped[str]
    message: Mapped[str] = mapped_column(sa.String(MESSAGE_MAX))
    state: Mapped[str] = mapped_column(sa.String(8))
    decided_by: Mapped[str | None]
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class AuditRow(Base):
    __tablename__ = "quota_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str]
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(300), index=True)
    field: Mapped[str | None] = mapped_column(sa.String(64))
    old_value: Mapped[str | None] = mapped_column(sa.Text)  # JSON
    new_value: Mapped[str | None] = mapped_column(sa.Text)  # JSON


class SyncStateRow(Base):
    """One row: the desired state the sync applied last (`DesiredState.to_dict()`, as JSON)."""

    __tablename__ = "quota_sync_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    applied: Mapped[str] = mapped_column(sa.Text)
    applied_at: Mapped[datetime]


class DiskUsageRow(Base):
    """What the disk pass read last for one user or group (replaced by every pass; shown, never summed)."""

    __tablename__ = "quota_disk_usage"
    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    name: Mapped[str] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(sa.BigInteger)
    used_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    limit_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    used_inodes: Mapped[int | None] = mapped_column(sa.BigInteger)
    limit_inodes: Mapped[int | None] = mapped_column(sa.BigInteger)
    exact: Mapped[bool]
    measured_at: Mapped[datetime]


SLOTS = {"slurm": 1, "disk": 2}  # SyncStateRow ids: what the sync set in SLURM, what the disk pass set


# --- what the store hands out --------------------------------------------------------------------

@dataclass(frozen=True)
class Project:
    name: str
    description: str
    template: ProjectTemplate
    managers: tuple[str, ...]
    members: tuple[str, ...]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class MembershipRequest:
    id: int
    project: str
    user: str
    message: str
    state: str
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    field: str | None
    old: Any  # the decoded JSON value (None: not set)
    new: Any


# --- checks --------------------------------------------------------------------------------------

def _user(name: object, what: str = "user") -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise StoreError(f"{what}: must be a hub user name (1 to 255 characters, no spaces), got {name!r:.60}")
    return name


def _users(names: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise StoreError(f"{what}: must be a list of hub user names, got {type(names).__name__}")
    return tuple(sorted({_user(n, what) for n in names}))


def _project_name(name: object) -> str:
    if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name):
        raise StoreError("project name: must be a SLURM account name (2 to 32 of a-z, 0-9, _ and -, "
                         f"starting with a letter), got {name!r:.60}")
    return name


def _text(value: object, what: str, most: int) -> str:
    if not isinstance(value, str) or len(value) > most:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise StoreError(f"{what}: must be a text of at most {most} characters, got {got}")
    return value


def _limits(value: object, where: str) -> Limits:
    """`value` (Limits or a mapping) checked again field by field: a tampered Limits is refused too."""
    if not isinstance(value, (Limits, Mapping)):
        raise StoreError(f"{where}: must be Limits or a mapping of limit names to values, got {type(value).__name__}")
    try:
        return Limits.from_mapping(value.to_dict() if isinstance(value, Limits) else value, where)
    except LimitError as e:
        raise StoreError(str(e)) from None


def _template(value: object) -> ProjectTemplate:
    if not isinstance(value, ProjectTemplate):
        raise StoreError(f"template: must be a ProjectTemplate, got {type(value).__name__}")
    checked = {}
    for name, rule in TEMPLATE_LIMITS.items():
        try:
            checked[name] = check_limit(rule, getattr(value, name))
        except LimitError as e:
            raise StoreError(f"template.{name}: {str(e).split(': ', 1)[-1]}") from None
    partitions = value.partitions
    if not isinstance(partitions, tuple) or not all(isinstance(p, str) and PARTITION_NAME.fullmatch(p) for p in partitions):
        raise StoreError(f"template.partitions: must be a list of SLURM partition names, got {partitions!r:.80}")
    return ProjectTemplate(**checked, partitions=partitions)


def _request_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"request: must be a request id (a whole number), got {value!r:.40}")
    return value


# --- rows <-> values -----------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _limits_of(row: OverrideRow | None) -> Limits:
    return Limits(**{name: getattr(row, name) for name in LIMIT_FIELDS}) if row else Limits()


def _template_values(template: ProjectTemplate) -> dict[str, Any]:
    return {**{name: getattr(template, name) for name in TEMPLATE_LIMITS}, "partitions": list(template.partitions)}


def _template_of(row: ProjectRow) -> ProjectTemplate:
    return ProjectTemplate(**{name: getattr(row, name) for name in TEMPLATE_LIMITS},
                           partitions=tuple(json.loads(row.partitions)))


def _request_of(row: RequestRow) -> MembershipRequest:
    return MembershipRequest(row.id, row.project, row.user_name, row.message, row.state, row.created_at,
                             row.decided_by, row.decided_at)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}


class QuotaStore:
    """The repository over one `ServiceDatabase` (see `database(url)`); each call is one transaction."""

    def __init__(self, db: ServiceDatabase):
        self.db = db

    @contextlib.contextmanager
    def _session(self, conflict: str) -> Iterator[Session]:
        """A session; a constraint that a concurrent change broke becomes StoreError(conflict)."""
        try:
            with self.db.session() as session:
                yield session
        except IntegrityError:
            raise StoreError(conflict) from None

    @staticmethod
    def _audit(session: Session, at: datetime, actor: str, action: str, target: str,
               field: str | None = None, old: Any = None, new: Any = None) -> None:
        session.add(AuditRow(at=at, actor=actor, action=action, target=target, field=field,
                             old_value=_json(old), new_value=_json(new)))

    @staticmethod
    def _project_row(session: Session, name: str) -> ProjectRow:
        row = session.get(ProjectRow, _project_name(name))
        if row is None:
            raise StoreError(f"project {name}: unknown project")
        return row

    # --- overrides -------------------------------------------------------------------------------

    def override(self, user: str) -> Limits:
        """The user's override (all fields None: none)."""
        with self.db.session() as session:
            return _limits_of(session.get(OverrideRow, _user(user)))

    def overrides(self) -> dict[str, Limits]:
        with self.db.session() as session:
            return {row.user_name: _limits_of(row) for row in session.scalars(sa.select(OverrideRow))}

    def set_override(self, user: str, limits: Limits | Mapping[str, Any], actor: str) -> Limits:
        """Replace the user's override with `limits` (None fields: not set); one audit row per changed field."""
        user, actor, new = _user(user), _user(actor, "actor"), _limits(limits, "override")
        with self._session(f"override of {user}: changed at the same time by someone else; try again") as session:
            row = session.get(OverrideRow, user)
            changes = _changes(_limits_of(row).to_dict(), new.to_dict())
            if not changes:
                return new
            now = _now()
            if not new.set_fields():
                session.delete(row)
            else:
                if row is None:
                    row = OverrideRow(user_name=user)
                    session.add(row)
                for name, value in new.to_dict().items():
                    setattr(row, name, value)
                row.updated_at, row.updated_by = now, actor
            for name, (old, value) in changes.items():
                self._audit(session, now, actor, "override.set", f"user:{user}", name, old, value)
        return new

    def clear_override(self, user: str, actor: str) -> bool:
        """Remove the user's override (one audit row per field it set); False when there was none."""
        user, actor = _user(user), _user(actor, "actor")
        with self.db.session() as session:
            row = session.get(OverrideRow, user)
            if row is None:
                return False
            now = _now()
            for name, old in _limits_of(row).set_fields().items():
                self._audit(session, now, actor, "override.clear", f"user:{user}", name, old, None)
            session.delete(row)
        return True

    # --- projects --------------------------------------------------------------------------------

    def create_project(self, name: str, template: ProjectTemplate, managers: Iterable[str], actor: str,
                       description: str = "") -> Project:
        name, template, actor = _project_name(name), _template(template), _user(actor, "actor")
        managers, description = _users(managers, "managers"), _text(description, "description", DESCRIPTION_MAX)
        duplicate = f"project {name}: already exists"
        with self._session(duplicate) as session:
            if session.get(ProjectRow, name) is not None:
                raise StoreError(duplicate)
            now = _now()
            values = _template_values(template)
            session.add(ProjectRow(name=name, description=description, created_at=now, created_by=actor,
                                   **{**values, "partitions": _json(values["partitions"])}))
            session.flush()
            session.add_all(ManagerRow(project=name, user_name=m) for m in managers)
            self._audit(session, now, actor, "project.create", f"project:{name}",
                        new={**values, "description": description, "managers": list(managers)})
        return self.project(name)

    def update_project(self, name: str, actor: str, *, template: ProjectTemplate | None = None,
                       description: str | None = None, managers: Iterable[str] | None = None) -> Project:
        """Change what is given (None: keep); one audit row per changed field."""
        actor = _user(actor, "actor")
        new: dict[str, Any] = {}
        if template is not None:
            new.update(_template_values(_template(template)))
        if description is not None:
            new["description"] = _text(description, "description", DESCRIPTION_MAX)
        if managers is not None:
            new["managers"] = list(_users(managers, "managers"))
        with self._session(f"project {name}: changed at the same time by someone else; try again") as session:
            row = self._project_row(session, name)
            old_managers = list(session.scalars(sa.select(ManagerRow.user_name).where(ManagerRow.project == name)
                                                .order_by(ManagerRow.user_name)))
            old = {**_template_values(_template_of(row)), "description": row.description, "managers": old_managers}
            changes = _changes(old, new)
            now = _now()
            for field, (was, value) in changes.items():
                if field == "managers":
                    session.execute(sa.delete(ManagerRow).where(ManagerRow.project == name,
                                                                ManagerRow.user_name.not_in(value)))
                    session.add_all(ManagerRow(project=name, user_name=m) for m in set(value) - set(was))
                else:
                    setattr(row, field, _json(value) if field == "partitions" else value)
                self._audit(session, now, actor, "project.update", f"project:{name}", field, was, value)
        return self.project(name)

    def project(self, name: str) -> Project:
        with self.db.session() as session:
            row = self._project_row(session, name)
            managers = session.scalars(sa.select(ManagerRow.user_name).where(ManagerRow.project == name)
                                       .order_by(ManagerRow.user_name))
            members = session.scalars(sa.select(MemberRow.user_name).where(MemberRow.project == name)
                                      .order_by(MemberRow.user_name))
            return Project(row.name, row.description, _template_of(row), tuple(managers), tuple(members),
                           row.created_at, row.created_by)

    def project_names(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(ProjectRow.name).order_by(ProjectRow.name)))

    def projects_of(self, user: str) -> list[str]:
        """The projects the user is a member of (may run jobs in), by name."""
        with self.db.session() as session:
            return list(session.scalars(sa.select(MemberRow.project).where(MemberRow.user_name == _user(user))
                                        .order_by(MemberRow.project)))

    def managed_by(self, user: str) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(ManagerRow.project).where(ManagerRow.user_name == _user(user))
                                        .order_by(ManagerRow.project)))

    # --- membership ------------------------------------------------------------------------------

    def request_membership(self, project: str, user: str, message: str = "") -> MembershipRequest:
        user, message = _user(user), _text(message, "message", MESSAGE_MAX)
        pending = f"request: {user} already has a pending request for project {project}"
        with self._session(pending) as session:
            self._project_row(session, project)
            if session.get(MemberRow, (project, user)) is not None:
                raise StoreError(f"user {user}: already a member of project {project}")
            if session.scalar(sa.select(RequestRow.id).where(RequestRow.project == project, RequestRow.user_name == user,
                                                             RequestRow.state == "pending")) is not None:
                raise StoreError(pending)
            now = _now()
            row = RequestRow(project=project, user_name=user, message=message, state="pending", created_at=now)
            session.add(row)
            session.flush()
            self._audit(session, now, user, "member.request", f"project:{project}", new={"request": row.id, "user": user})
            return _request_of(row)

    def requests(self, project: str | None = None, state: str | None = "pending") -> list[MembershipRequest]:
        """Membership requests, oldest first: of `project` (None: all) in `state` (None: any)."""
        if state is not None and state not in STATES:
            raise StoreError(f"state: must be one of {', '.join(STATES)}, got {state!r:.20}")
        query = sa.select(RequestRow).order_by(RequestRow.id)
        if project is not None:
            query = query.where(RequestRow.project == _project_name(project))
        if state is not None:
            query = query.where(RequestRow.state == state)
        with self.db.session() as session:
            return [_request_of(row) for row in session.scalars(query)]

    def decide(self, request_id: int, approve: bool, actor: str) -> MembershipRequest:
        """Approve (the user becomes a member) or deny a pending request."""
        request_id, actor = _request_id(request_id), _user(actor, "actor")
        if not isinstance(approve, bool):
            raise StoreError(f"approve: must be true or false, got {approve!r:.20}")
        state = "approved" if approve else "denied"
        with self._session(f"request {request_id}: decided at the same time by someone else") as session:
            row = session.get(RequestRow, request_id)
            if row is None:
                raise StoreError(f"request {request_id}: unknown request")
            now = _now()
            # only a request still pending: of two deciding at once, one wins and the other is refused
            done = session.execute(sa.update(RequestRow).where(RequestRow.id == request_id, RequestRow.state == "pending")
                                   .values(state=state, decided_by=actor, decided_at=now))
            if done.rowcount != 1:
                session.refresh(row)
                raise StoreError(f"request {request_id}: not pending (already {row.state} by {row.decided_by})")
            session.refresh(row)
            if approve and session.get(MemberRow, (row.project, row.user_name)) is None:
                session.add(MemberRow(project=row.project, user_name=row.user_name, approved_by=actor, approved_at=now))
            self._audit(session, now, actor, f"member.{'approve' if approve else 'deny'}", f"project:{row.project}",
                        new={"request": request_id, "user": row.user_name})
            return _request_of(row)

    def remove_member(self, project: str, user: str, actor: str) -> None:
        user, actor = _user(user), _user(actor, "actor")
        with self.db.session() as session:
            self._project_row(session, project)
            row = session.get(MemberRow, (project, user))
            if row is None:
                raise StoreError(f"user {user}: not a member of project {project}")
            session.delete(row)
            self._audit(session, _now(), actor, "member.remove", f"project:{project}", old={"user": user})

    # --- the audit -------------------------------------------------------------------------------

    def audit(self, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        """The newest `limit` audit entries (of `target`, e.g. "user:alice" or "project:vision"), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise StoreError(f"limit: must be a whole number from 1 to 10000, got {limit!r:.20}")
        query = sa.select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if target is not None:
            query = query.where(AuditRow.target == _text(target, "target", 300))
        with self.db.session() as session:
            return [AuditEntry(r.id, r.at, r.actor, r.action, r.target, r.field,
                               None if r.old_value is None else json.loads(r.old_value),
                               None if r.new_value is None else json.loads(r.new_value))
                    for r in session.scalars(query)]

    # --- the sync's memory -----------------------------------------------------------------------

    def last_applied(self, slot: str = "slurm") -> dict | None:
        """What the sync applied to SLURM (slot "disk": the disk pass to the file system) last; None before."""
        with self.db.session() as session:
            row = session.get(SyncStateRow, SLOTS[slot])
            return None if row is None else json.loads(row.applied)

    def save_applied(self, state: Mapping[str, Any], slot: str = "slurm") -> None:
        with self.db.session() as session:
            row = session.get(SyncStateRow, SLOTS[slot]) or SyncStateRow(id=SLOTS[slot])
            row.applied, row.applied_at = json.dumps(state, sort_keys=True), _now()
            session.add(row)

    # --- the disk pass's last reading ------------------------------------------------------------

    def save_disk_usage(self, uses: Iterable[DiskUse]) -> None:
        """Replace the last reading with `uses` (one transaction: readers see the old or the new one)."""
        now = _now()
        with self.db.session() as session:
            session.execute(sa.delete(DiskUsageRow))
            for u in uses:
                session.add(DiskUsageRow(kind=u.kind, name=u.name, id=u.id, used_bytes=u.used_bytes,
                                         limit_bytes=u.limit_bytes, used_inodes=u.used_inodes,
                                         limit_inodes=u.limit_inodes, exact=u.exact, measured_at=u.measured_at or now))

    def disk_usage(self, kind: str | None = None, names: Iterable[str] | None = None) -> list[DiskUse]:
        """The last reading, of one kind ("user", "group") and these names if given."""
        query = sa.select(DiskUsageRow).order_by(DiskUsageRow.kind, DiskUsageRow.name)
        if kind is not None:
            query = query.where(DiskUsageRow.kind == kind)
        if names is not None:
            query = query.where(DiskUsageRow.name.in_(list(names)))
        with self.db.session() as session:
            return [DiskUse(r.kind, r.name, r.id, r.used_bytes, r.limit_bytes, r.used_inodes, r.limit_inodes,
                            r.exact, r.measured_at) for r in session.scalars(query)]
