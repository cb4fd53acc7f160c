"""carme-sessions' store: the choices SLURM does not know, and the extensions' audit.

Two tables (created by ONE Alembic tree, `carme_services/sessions/migrations`, recorded in
`alembic_version_carme_sessions`):

- `session_choices`: per SLURM job id, the user's options of that start (image, GPU type, queue,
  runtime asked for) as the hub's server showed them while the job ran. SLURM knows none of them,
  so the history could not show the image or relaunch without them. No usage, no times, no state:
  those are always SLURM's (sacct). Rows older than `keep_days` are dropped.
- `session_extensions`: every Extend asked for, who asked, what it changed or why it was refused.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carme_core.db import ServiceDatabase, declarative_base, now_utc

from .history import Choice

SERVICE = "carme-sessions"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
OUTCOMES = ("extended", "refused", "failed")  # failed: SLURM refused or did not answer


def database(url: str) -> ServiceDatabase:
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


Base = declarative_base("SessionsBase")


class ChoiceRow(Base):
    __tablename__ = "session_choices"
    __table_args__ = (sa.Index("ix_session_choices_server", "user_name", "server_name"),)
    job_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_name: Mapped[str]
    server_name: Mapped[str]
    options: Mapped[str] = mapped_column(sa.Text)  # JSON object
    seen_at: Mapped[datetime] = mapped_column(index=True)


class ExtensionRow(Base):
    __tablename__ = "session_extensions"
    __table_args__ = (sa.CheckConstraint("outcome IN ('extended', 'refused', 'failed')", name="outcome"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str]
    user_name: Mapped[str] = mapped_column(index=True)
    server_name: Mapped[str]
    job_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    minutes: Mapped[int]
    from_minutes: Mapped[int | None]
    to_minutes: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(sa.String(16))
    message: Mapped[str] = mapped_column(sa.Text)


def _choice(row: ChoiceRow) -> Choice:
    return Choice(row.job_id, row.user_name, row.server_name, json.loads(row.options), row.seen_at.timestamp())


def _extension(row: ExtensionRow) -> dict:
    return {"id": row.id, "at": row.at.timestamp(), "actor": row.actor, "user": row.user_name,
            "server": row.server_name, "job_id": row.job_id, "minutes": row.minutes, "from_minutes": row.from_minutes,
            "to_minutes": row.to_minutes, "outcome": row.outcome, "message": row.message}


class SessionStore:
    def __init__(self, db: ServiceDatabase):
        self.db = db

    # ---- the choices -----------------------------------------------------------------------------

    def remember(self, choices: list[Choice]) -> int:
        """Keep the choices of jobs not seen before (a job's options never change); how many were new."""
        if not choices:
            return 0
        with self.db.session() as s:
            known = set(s.scalars(sa.select(ChoiceRow.job_id).where(ChoiceRow.job_id.in_([c.job_id for c in choices]))))
            new = {c.job_id: c for c in choices if c.job_id not in known}
            for c in new.values():
                s.add(ChoiceRow(job_id=c.job_id, user_name=c.user, server_name=c.server,
                                options=json.dumps(dict(c.options), sort_keys=True),
                                seen_at=datetime.fromtimestamp(c.seen_at, timezone.utc).replace(microsecond=0)))
            return len(new)

    def choices(self, user: str) -> dict[str, Choice]:
        """{job id: Choice} of `user`'s jobs."""
        with self.db.session() as s:
            return {r.job_id: _choice(r) for r in s.scalars(sa.select(ChoiceRow).where(ChoiceRow.user_name == user))}

    def forget_before(self, before: datetime) -> int:
        """Drop the choices first seen before `before` (older than any history shown); how many."""
        with self.db.session() as s:
            return s.execute(sa.delete(ChoiceRow).where(ChoiceRow.seen_at < before)).rowcount

    def forget_older_than(self, days: float) -> int:
        return self.forget_before(now_utc() - timedelta(days=days))

    # ---- the extensions' audit -------------------------------------------------------------------

    def audit(self, *, actor: str, user: str, server: str, job_id: str, minutes: int, outcome: str, message: str,
              from_minutes: int | None = None, to_minutes: int | None = None) -> dict:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: one of {', '.join(OUTCOMES)}, not {outcome!r}")
        with self.db.session() as s:
            row = ExtensionRow(at=now_utc(), actor=actor, user_name=user, server_name=server, job_id=job_id,
                               minutes=minutes, from_minutes=from_minutes, to_minutes=to_minutes, outcome=outcome,
                               message=message[:2000])
            s.add(row)
            s.flush()
            return _extension(row)

    def extensions(self, user: str | None = None, job_ids: list[str] | None = None, limit: int = 100) -> list[dict]:
        """The audit, newest first: of `user` (None: everyone's), of `job_ids` (None: any)."""
        query = sa.select(ExtensionRow)
        if user is not None:
            query = query.where(ExtensionRow.user_name == user)
        if job_ids is not None:
            query = query.where(ExtensionRow.job_id.in_(job_ids))
        with self.db.session() as s:
            return [_extension(r) for r in s.scalars(query.order_by(ExtensionRow.id.desc()).limit(limit))]
