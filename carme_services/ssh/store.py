"""carme-ssh's store: the users' public keys and the log of SSH sessions.

Two tables (ONE Alembic tree, `carme_services/ssh/migrations`, version table `alembic_version_carme_ssh`):

- `ssh_keys`: the public keys users registered on the "SSH keys" page (OpenSSH one-line format,
  parsed and re-exported by asyncssh, so only a valid public key is ever stored), with their
  SHA256 fingerprint, unique per user.
- `ssh_sessions`: who, when, from where, which server and job, what kind (shell, exec, sftp,
  forward), bytes each way, how it ended.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carme_core.db import ServiceDatabase, declarative_base, now_utc

SERVICE = "carme-ssh"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database(url: str) -> ServiceDatabase:
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


Base = declarative_base("SshBase")


class KeyRow(Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (sa.UniqueConstraint("user_name", "fingerprint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(index=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    algorithm: Mapped[str] = mapped_column(sa.String(64))
    public_key: Mapped[str] = mapped_column(sa.Text)
    comment: Mapped[str]
    added_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class SessionRow(Base):
    __tablename__ = "ssh_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(index=True)
    server_name: Mapped[str]
    job_id: Mapped[str] = mapped_column(sa.String(32))
    peer: Mapped[str]
    kind: Mapped[str] = mapped_column(sa.String(16))
    detail: Mapped[str]  # the command (cut), the forward's destination
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    bytes_in: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    outcome: Mapped[str] = mapped_column(sa.Text, default="")


def _key(row: KeyRow) -> dict:
    return {"id": row.id, "user": row.user_name, "fingerprint": row.fingerprint, "algorithm": row.algorithm,
            "comment": row.comment, "added_at": row.added_at.timestamp(),
            "last_used_at": row.last_used_at.timestamp() if row.last_used_at else None}


def _session(row: SessionRow) -> dict:
    return {"id": row.id, "user": row.user_name, "server": row.server_name, "job_id": row.job_id, "peer": row.peer,
            "kind": row.kind, "detail": row.detail, "started_at": row.started_at.timestamp(),
            "ended_at": row.ended_at.timestamp() if row.ended_at else None, "bytes_in": row.bytes_in,
            "bytes_out": row.bytes_out, "outcome": row.outcome}


class KeyExists(ValueError):
    pass


class SshStore:
    def __init__(self, db: ServiceDatabase):
        self.db = db

    # ---- keys ------------------------------------------------------------------------------------

    def add_key(self, user: str, *, fingerprint: str, algorithm: str, public_key: str, comment: str) -> dict:
        with self.db.session() as s:
            known = s.scalar(sa.select(KeyRow).where(KeyRow.user_name == user, KeyRow.fingerprint == fingerprint))
            if known is not None:
                raise KeyExists(f"key: {fingerprint} is registered already (as {known.comment or 'no comment'!r})")
            row = KeyRow(user_name=user, fingerprint=fingerprint, algorithm=algorithm, public_key=public_key,
                         comment=comment, added_at=now_utc())
            s.add(row)
            s.flush()
            return _key(row)

    def keys(self, user: str) -> list[dict]:
        with self.db.session() as s:
            return [_key(r) for r in s.scalars(sa.select(KeyRow).where(KeyRow.user_name == user).order_by(KeyRow.id))]

    def public_keys(self, user: str) -> list[tuple[str, str]]:
        """(fingerprint, OpenSSH public key line) of the user's keys: what a key login is checked against."""
        with self.db.session() as s:
            return [(r.fingerprint, r.public_key) for r in s.scalars(sa.select(KeyRow).where(KeyRow.user_name == user))]

    def key_used(self, user: str, fingerprint: str) -> None:
        with self.db.session() as s:
            s.execute(sa.update(KeyRow).where(KeyRow.user_name == user, KeyRow.fingerprint == fingerprint)
                      .values(last_used_at=now_utc()))

    def remove_key(self, user: str, key_id: int) -> bool:
        with self.db.session() as s:
            return s.execute(sa.delete(KeyRow).where(KeyRow.user_name == user, KeyRow.id == key_id)).rowcount > 0

    # ---- the session log -------------------------------------------------------------------------

    def session_started(self, *, user: str, server: str, job_id: str, peer: str, kind: str, detail: str) -> int:
        with self.db.session() as s:
            row = SessionRow(user_name=user, server_name=server, job_id=job_id, peer=peer, kind=kind,
                             detail=detail[:255], started_at=now_utc(), bytes_in=0, bytes_out=0, outcome="")
            s.add(row)
            s.flush()
            return row.id

    def session_ended(self, session_id: int, *, bytes_in: int, bytes_out: int, outcome: str) -> None:
        with self.db.session() as s:
            s.execute(sa.update(SessionRow).where(SessionRow.id == session_id).values(
                ended_at=now_utc(), bytes_in=bytes_in, bytes_out=bytes_out, outcome=outcome[:2000]))

    def sessions(self, user: str | None = None, limit: int = 200) -> list[dict]:
        query = sa.select(SessionRow)
        if user is not None:
            query = query.where(SessionRow.user_name == user)
        with self.db.session() as s:
            return [_session(r) for r in s.scalars(query.order_by(SessionRow.id.desc()).limit(limit))]
