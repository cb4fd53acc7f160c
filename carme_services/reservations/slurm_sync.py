"""Where the store and SLURM's reservations disagree, and what to do about it (pure).

    sync_plan(bookings, slurm_names, snapshot_at, now, prefix) -> SyncPlan

Run at the service's start and every `sync_interval`, over the hub's one view of SLURM's
reservations (`snapshot_at`: when that snapshot was taken). Doubt is not evidence: an approved
booking is "gone" (deleted in SLURM by hand) only when a snapshot taken after SLURM last took
its reservation lacks it; without a snapshot nothing is marked gone.

- approved, its end passed -> ended (SLURM drops an ended reservation itself);
- approved, SLURM no longer has it -> gone;
- pending, its end passed without a decision -> ended, with a note;
- a reservation named like Carme's (`<prefix><id>[-user]`) whose booking is cancelled, denied,
  gone or pending -> delete it (a cancel whose `scontrol delete` failed, a create that timed out
  after SLURM made it);
- one named like Carme's with no booking in the store -> reported to admins, left alone (it may
  belong to another Carme sharing the cluster, or an admin made it by hand).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from carme_slurm.reservation_argv import USER_NAME

from .store import Booking

SNAPSHOT_MARGIN_S = 1.0  # a snapshot must begin this long after SLURM took the reservation


def slurm_name(prefix: str, booking_id: int, user: str) -> str:
    """The reservation's name in SLURM: carme-r12-alice (the user left out if SLURM could not take it)."""
    tail = f"-{user}" if USER_NAME.fullmatch(user) and len(prefix) + len(str(booking_id)) + len(user) < 64 else ""
    return f"{prefix}{booking_id}{tail}"


def carme_named(prefix: str, name: str) -> int | None:
    """The booking id in a name Carme gives, else None."""
    match = re.fullmatch(re.escape(prefix) + r"([0-9]{1,12})(?:-.*)?", name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class SyncPlan:
    ended: tuple[Booking, ...] = ()
    gone: tuple[Booking, ...] = ()
    expired: tuple[Booking, ...] = ()  # pending until their end: ended undecided
    delete: tuple[str, ...] = ()  # SLURM reservation names to delete again
    unknown: tuple[str, ...] = ()  # Carme-named in SLURM, no booking

    @property
    def empty(self) -> bool:
        return not (self.ended or self.gone or self.expired or self.delete or self.unknown)


def sync_plan(bookings: Iterable[Booking], slurm_names: Iterable[str], snapshot_at: float | None,
              now: datetime, prefix: str) -> SyncPlan:
    in_slurm = set(slurm_names)
    by_id = {b.id: b for b in bookings}
    ended, gone, expired, delete, unknown = [], [], [], [], []
    for b in by_id.values():
        if b.state == "approved":
            if b.end <= now:
                ended.append(b)
            elif (b.slurm_name and b.slurm_name not in in_slurm and snapshot_at is not None
                  and b.in_slurm_at is not None and snapshot_at > b.in_slurm_at.timestamp() + SNAPSHOT_MARGIN_S):
                gone.append(b)
        elif b.state == "pending" and b.end <= now:
            expired.append(b)
    for name in sorted(in_slurm):
        booking_id = carme_named(prefix, name)
        if booking_id is None:
            continue
        booking = by_id.get(booking_id)
        if booking is None or booking.slurm_name != name:
            unknown.append(name)
        elif booking.state in ("cancelled", "denied", "gone", "pending"):
            delete.append(name)
    return SyncPlan(tuple(ended), tuple(gone), tuple(expired), tuple(delete), tuple(unknown))
