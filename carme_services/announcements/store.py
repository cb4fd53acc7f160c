"""carme-announcements' store: the notices admins posted, and the audit of every change.

Two tables (created by ONE Alembic tree, `carme_services/announcements/migrations`, recorded in
`alembic_version_carme_announcements`):

- `announcements`: each notice (severity, plain text, start, expiry), who posted it and when; a
  deleted one keeps its row (`deleted_at`, `deleted_by`), so the audit can always name it;
- `announcement_audit`: who did what when: `posted` or `deleted`, with the notice as it was.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carme_core.db import ServiceDatabase, declarative_base, now_utc

from .notices import NewNotice

SERVICE = "carme-announcements"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ACTIONS = ("posted", "deleted")


def database(url: str) -> ServiceDatabase:
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


Base = declarative_base("AnnouncementsBase")


class AnnouncementRow(Base):
    __tablename__ = "announcements"
    __table_args__ = (sa.CheckConstraint("severity IN ('info', 'warning', 'danger')", name="severity"),
                      sa.CheckConstraint("expiry > start", name="expiry_after_start"))
    id: Mapped[int] = mapped_column(primary_key=True)
    severity: Mapped[str] = mapped_column(sa.String(16))
    text: Mapped[str] = mapped_column(sa.Text)
    start: Mapped[datetime]
    expiry: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None]


class AuditRow(Base):
    __tablename__ = "announcement_audit"
    __table_args__ = (sa.CheckConstraint("action IN ('posted', 'deleted')", name="action"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str] = mapped_column(sa.String(16))
    announcement_id: Mapped[int] = mapped_column(index=True)
    notice: Mapped[str] = mapped_column(sa.Text)  # JSON: the notice as posted or deleted


def state(row: AnnouncementRow, now: datetime) -> str:
    if row.deleted_at is not None:
        return "deleted"
    if now < row.start:
        return "scheduled"
    return "current" if now < row.expiry else "expired"


def as_dict(row: AnnouncementRow, now: datetime) -> dict:
    return {"id": row.id, "severity": row.severity, "text": row.text,
            "start": row.start.timestamp(), "expiry": row.expiry.timestamp(),
            "start_iso": row.start.isoformat(), "expiry_iso": row.expiry.isoformat(),
            "created_at": row.created_at.timestamp(), "created_by": row.created_by,
            "deleted_at": row.deleted_at.timestamp() if row.deleted_at else None, "deleted_by": row.deleted_by,
            "state": state(row, now)}


def _audit(row: AuditRow) -> dict:
    return {"id": row.id, "at": row.at.timestamp(), "at_iso": row.at.isoformat(), "actor": row.actor, "action": row.action,
            "announcement_id": row.announcement_id, "notice": json.loads(row.notice)}


class AnnouncementStore:
    def __init__(self, db: ServiceDatabase):
        self.db = db

    def _audited(self, s, actor: str, action: str, row: AnnouncementRow, now: datetime) -> None:
        notice = {k: v for k, v in as_dict(row, now).items() if k in ("severity", "text", "start_iso", "expiry_iso")}
        s.add(AuditRow(at=now, actor=actor, action=action, announcement_id=row.id,
                       notice=json.dumps(notice, sort_keys=True, ensure_ascii=False)))

    def post(self, actor: str, notice: NewNotice) -> dict:
        now = now_utc()
        with self.db.session() as s:
            row = AnnouncementRow(severity=notice.severity, text=notice.text, start=notice.start,
                                  expiry=notice.expiry, created_at=now, created_by=actor)
            s.add(row)
            s.flush()
            self._audited(s, actor, "posted", row, now)
            return as_dict(row, now)

    def delete(self, actor: str, announcement_id: int) -> dict | None:
        """Mark it deleted (its row stays for the audit); None if there is no such (undeleted) notice."""
        now = now_utc()
        with self.db.session() as s:
            row = s.get(AnnouncementRow, announcement_id)
            if row is None or row.deleted_at is not None:
                return None
            row.deleted_at, row.deleted_by = now, actor
            s.flush()
            self._audited(s, actor, "deleted", row, now)
            return as_dict(row, now)

    def listing(self, now: datetime | None = None, include_past_days: float = 0.0) -> list[dict]:
        """The notices not deleted and not expired (scheduled and current), soonest start first; with
        `include_past_days`, also those expired or deleted within that many days."""
        now = now or now_utc()
        query = sa.select(AnnouncementRow)
        if include_past_days:
            since = now - timedelta(days=include_past_days)
            query = query.where(AnnouncementRow.expiry > since,
                                sa.or_(AnnouncementRow.deleted_at.is_(None), AnnouncementRow.deleted_at > since))
        else:
            query = query.where(AnnouncementRow.deleted_at.is_(None), AnnouncementRow.expiry > now)
        with self.db.session() as s:
            rows = s.scalars(query.order_by(AnnouncementRow.start, AnnouncementRow.id))
            return [as_dict(r, now) for r in rows]

    def audit(self, limit: int = 100) -> list[dict]:
        """Every change, newest first."""
        with self.db.session() as s:
            return [_audit(r) for r in s.scalars(sa.select(AuditRow).order_by(AuditRow.id.desc()).limit(limit))]
