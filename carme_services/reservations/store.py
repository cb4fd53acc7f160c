"""carme-reservations' store: the bookings, what happened to each, and the users' feed tokens.

SQLAlchemy 2 models (tables `reservation_*`, created by ONE Alembic tree,
`carme_services/reservations/migrations`, recorded in `alembic_version_carme_reservations`) and
`BookingStore`, which every caller goes through. Times are timezone-aware UTC on every backend.

A booking's states:

    pending ──approve──> approved ──(its end passes)──> ended
       │                    │ └──(deleted in SLURM by hand)──> gone
       └──deny──> denied    └──cancel──> cancelled          (pending ones can be cancelled too)

Only an approved booking has a SLURM reservation (`slurm_name`); SLURM is what holds the GPUs,
the store keeps who asked for what and who decided.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carme_core.db import ServiceDatabase, declarative_base, now_utc

from .booking import BookingRequest

SERVICE = "carme-reservations"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
STATES = ("pending", "approved", "denied", "cancelled", "gone", "ended")
OPEN_STATES = ("pending", "approved")  # hold capacity, count as the booker's open bookings


class StoreError(ValueError):
    """A look-up or change refused; str() names the thing."""


def database(url: str) -> ServiceDatabase:
    return ServiceDatabase(url, SERVICE, MIGRATIONS)


Base = declarative_base("ReservationsBase")


class BookingRow(Base):
    __tablename__ = "reservation_bookings"
    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'approved', 'denied', 'cancelled', 'gone', 'ended')", name="state"),
        sa.CheckConstraint("end_at > start_at", name="window"),
        sa.CheckConstraint("gpus > 0", name="gpus"),
        sa.Index("ix_reservation_bookings_window", "end_at", "start_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    gpus: Mapped[int]
    gpu_type: Mapped[str] = mapped_column(sa.String(64))
    partition: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(120))
    nodes: Mapped[str] = mapped_column(sa.Text)  # comma-separated node names the booking holds
    slurm_name: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    note: Mapped[str] = mapped_column(sa.Text)  # the last word on it: why denied, gone, failed
    created_at: Mapped[datetime]
    created_by: Mapped[str]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None]
    in_slurm_at: Mapped[datetime | None]  # when SLURM last took its reservation (created or updated)


class EventRow(Base):
    __tablename__ = "reservation_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(sa.ForeignKey("reservation_bookings.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[str] = mapped_column(sa.Text)


class FeedTokenRow(Base):
    __tablename__ = "reservation_feed_tokens"
    user_name: Mapped[str] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class Booking:
    id: int
    user: str
    state: str
    start: datetime
    end: datetime
    gpus: int
    gpu_type: str
    partition: str
    title: str
    nodes: tuple[str, ...]
    slurm_name: str | None
    note: str
    created_at: datetime
    created_by: str
    decided_at: datetime | None = None
    decided_by: str | None = None
    in_slurm_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def request(self) -> BookingRequest:
        return BookingRequest(self.start, self.end, self.gpus, self.gpu_type, self.partition, self.title)

    @property
    def gpu_hours(self) -> float:
        return self.request.gpu_hours

    def to_dict(self) -> dict:
        at = lambda t: t.isoformat() if t else None  # noqa: E731
        return {"id": self.id, "user": self.user, "state": self.state, "start": at(self.start), "end": at(self.end),
                "gpus": self.gpus, "gpu_type": self.gpu_type, "partition": self.partition, "title": self.title,
                "nodes": list(self.nodes), "reservation": self.slurm_name, "note": self.note,
                "created_at": at(self.created_at), "created_by": self.created_by, "decided_at": at(self.decided_at),
                "decided_by": self.decided_by, "gpu_hours": round(self.gpu_hours, 3)}

    def busy_dict(self) -> dict:
        """What others see of it: a busy block (no owner, no title)."""
        return {"id": self.id, "busy": True, "state": "pending" if self.state == "pending" else "approved",
                "start": self.start.isoformat(), "end": self.end.isoformat(), "gpus": self.gpus,
                "gpu_type": self.gpu_type, "partition": self.partition, "nodes": list(self.nodes)}


def _booking(row: BookingRow) -> Booking:
    return Booking(id=row.id, user=row.user_name, state=row.state, start=row.start_at, end=row.end_at, gpus=row.gpus,
                   gpu_type=row.gpu_type, partition=row.partition, title=row.title,
                   nodes=tuple(n for n in row.nodes.split(",") if n), slurm_name=row.slurm_name, note=row.note,
                   created_at=row.created_at, created_by=row.created_by, decided_at=row.decided_at,
                   decided_by=row.decided_by, in_slurm_at=row.in_slurm_at)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class BookingStore:
    def __init__(self, db: ServiceDatabase):
        self.db = db

    def _event(self, session, booking_id: int, actor: str, action: str, detail: str = "") -> None:
        session.add(EventRow(booking_id=booking_id, at=now_utc(), actor=actor, action=action, detail=detail[:2000]))

    def add(self, user: str, request: BookingRequest, nodes: tuple[str, ...], state: str, actor: str) -> Booking:
        if state not in ("pending", "approved"):
            raise StoreError(f"state: a new booking is pending or approved, not {state!r}")
        with self.db.session() as s:
            row = BookingRow(user_name=user, state=state, start_at=request.start, end_at=request.end,
                             gpus=request.gpus, gpu_type=request.gpu_type, partition=request.partition,
                             title=request.title, nodes=",".join(nodes), slurm_name=None, note="",
                             created_at=now_utc(), created_by=actor,
                             decided_at=now_utc() if state == "approved" else None,
                             decided_by=actor if state == "approved" else None)
            s.add(row)
            s.flush()
            self._event(s, row.id, actor, "booked", f"{request.gpus} GPUs {request.gpu_type or 'any type'} "
                        f"{request.start.isoformat()} .. {request.end.isoformat()} on {','.join(nodes)}: {state}")
            return _booking(row)

    def get(self, booking_id: int) -> Booking:
        with self.db.session() as s:
            row = s.get(BookingRow, booking_id)
            if row is None:
                raise StoreError(f"booking {booking_id}: unknown")
            return _booking(row)

    def bookings(self, states: tuple[str, ...] | None = None, user: str | None = None,
                 overlapping: tuple[datetime, datetime] | None = None) -> list[Booking]:
        """Bookings by start, filtered by state, booker and a window they overlap."""
        query = sa.select(BookingRow)
        if states:
            query = query.where(BookingRow.state.in_(states))
        if user is not None:
            query = query.where(BookingRow.user_name == user)
        if overlapping:
            start, end = overlapping
            query = query.where(BookingRow.start_at < end, BookingRow.end_at > start)
        with self.db.session() as s:
            return [_booking(r) for r in s.scalars(query.order_by(BookingRow.start_at, BookingRow.id))]

    def by_slurm_names(self, names) -> list[Booking]:
        """The bookings (any state) whose SLURM reservation has one of `names`."""
        names = list(names)
        if not names:
            return []
        with self.db.session() as s:
            rows = s.scalars(sa.select(BookingRow).where(BookingRow.slurm_name.in_(names)))
            return [_booking(r) for r in rows]

    def update(self, booking: Booking, actor: str, action: str, detail: str = "", **changes) -> Booking:
        """Save `booking` with `changes` (fields of Booking) if its row still has the state it was
        read with; StoreError if someone changed it meanwhile."""
        new = replace(booking, **changes)
        with self.db.session() as s:
            row = s.get(BookingRow, booking.id)
            if row is None:
                raise StoreError(f"booking {booking.id}: unknown")
            if row.state != booking.state:
                raise StoreError(f"booking {booking.id}: is {row.state} now, not {booking.state}")
            row.state, row.start_at, row.end_at = new.state, new.start, new.end
            row.gpus, row.gpu_type, row.partition, row.title = new.gpus, new.gpu_type, new.partition, new.title
            row.nodes, row.slurm_name, row.note = ",".join(new.nodes), new.slurm_name, new.note
            row.decided_at, row.decided_by, row.in_slurm_at = new.decided_at, new.decided_by, new.in_slurm_at
            self._event(s, booking.id, actor, action, detail)
            return _booking(row)

    def events(self, booking_id: int) -> list[dict]:
        with self.db.session() as s:
            rows = s.scalars(sa.select(EventRow).where(EventRow.booking_id == booking_id).order_by(EventRow.id))
            return [{"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "detail": r.detail} for r in rows]

    # ---- feed tokens: a secret per user for the .ics URL; only its hash is kept -----------------------

    def new_feed_token(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            row = s.get(FeedTokenRow, user)
            if row is None:
                s.add(FeedTokenRow(user_name=user, token_sha256=token_hash(token), created_at=now_utc()))
            else:
                row.token_sha256, row.created_at = token_hash(token), now_utc()
        return token

    def has_feed_token(self, user: str) -> bool:
        with self.db.session() as s:
            return s.get(FeedTokenRow, user) is not None

    def feed_user(self, user: str, token: str) -> bool:
        """Is `token` the feed token of `user`?"""
        if not token:
            return False
        with self.db.session() as s:
            row = s.get(FeedTokenRow, user)
            return row is not None and secrets.compare_digest(row.token_sha256, token_hash(token))
