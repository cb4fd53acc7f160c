"""carme-cockpit's store: the audit of the admins' actions (who, when, what, the result).

One table, `cockpit_actions`, created by ONE Alembic tree (`carme_services/cockpit/migrations`,
recorded in `alembic_version_carme_cockpit`). Every stop, drain and resume asked for is written,
refused or not: the actor (the hub user), the action, its target (user/server or node), the reason
given, the outcome (done, refused, failed) and the words of the hub or SLURM.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carme_core.db import ServiceDatabase, declarative_base, now_utc

SERVICE = "carme-cockpit"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ACTIONS = ("stop", "drain", "resume")
OUTCOMES = ("done", "refused", "failed")  # refused: bad input or not allowed; failed: SLURM/the hub said no


def database(url: str) -> ServiceDatabase:
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


Base = declarative_base("CockpitBase")


class ActionRow(Base):
    __tablename__ = "cockpit_actions"
    __table_args__ = (sa.CheckConstraint("action IN ('stop', 'drain', 'resume')", name="action"),
                      sa.CheckConstraint("outcome IN ('done', 'refused', 'failed')", name="outcome"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[str] = mapped_column(index=True)  # user/server of a stop, the node of a drain or resume
    reason: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    message: Mapped[str] = mapped_column(sa.Text)


def _entry(row: ActionRow) -> dict:
    return {"id": row.id, "at": row.at.timestamp(), "actor": row.actor, "action": row.action, "target": row.target,
            "reason": row.reason, "outcome": row.outcome, "message": row.message}


class CockpitStore:
    def __init__(self, db: ServiceDatabase):
        self.db = db

    def record(self, *, actor: str, action: str, target: str, outcome: str, message: str, reason: str = "") -> dict:
        if action not in ACTIONS:
            raise ValueError(f"action: one of {', '.join(ACTIONS)}, not {action!r}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: one of {', '.join(OUTCOMES)}, not {outcome!r}")
        with self.db.session() as s:
            row = ActionRow(at=now_utc(), actor=actor[:255], action=action, target=target[:255], reason=reason[:2000],
                            outcome=outcome, message=message[:2000])
            s.add(row)
            s.flush()
            return _entry(row)

    def actions(self, limit: int = 100, target: str | None = None) -> list[dict]:
        """The audit, newest first (of `target` only, if given)."""
        query = sa.select(ActionRow)
        if target is not None:
            query = query.where(ActionRow.target == target)
        with self.db.session() as s:
            return [_entry(r) for r in s.scalars(query.order_by(ActionRow.id.desc()).limit(limit))]
