"""The reservations a user may spawn into, as the form offers them and the options check them (pure).

From the hub's one view of SLURM's reservations (no SLURM call):

- `reservation_choices(reservations, user, now)`: the ones not yet ended that admit the user (or
  that name no users, where accounts or groups decide and SLURM judges), active first; each says
  "active until 16:00" or "starts in 12 min".
- `refused_reservations(reservations, user)`: {name: why} for the ones SLURM would surely refuse
  the user (another user's; who it is for is not said): the options check refuses them before sbatch.
- `minutes_left(reservation, now)`: how long a server started in it may run (SLURM ends jobs when
  their reservation ends): the spawn's runtime is shortened to it, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from carme_slurm.reservations import SlurmReservation

from .progress import format_time


@dataclass(frozen=True)
class ReservationChoice:
    name: str
    start: int
    end: int
    active: bool
    nodes: str
    names_user: bool = True  # its Users name the user (else accounts or groups decide: SLURM judges)

    def words(self, now: float) -> str:
        if self.active or self.start <= now:
            return f"active until {format_time(self.end, now)}"
        minutes = max(1, round((self.start - now) / 60))
        if minutes < 120:
            return f"starts in {minutes} min"
        return f"starts {format_time(self.start, now)}"


def reservation_choices(reservations: Iterable[SlurmReservation], user: str, now: float) -> list[ReservationChoice]:
    chosen = [ReservationChoice(r.name, r.start_time, r.end_time, r.active or r.start_time <= now, r.nodes,
                                r.admits(user) is True)
              for r in reservations if r.admits(user) is not False and (not r.end_time or r.end_time > now)]
    return sorted(chosen, key=lambda c: (not c.active, c.start, c.name))


def refused_reservations(reservations: Iterable[SlurmReservation], user: str) -> dict[str, str]:
    return {r.name: f"{r.name} is reserved for other users, not for you: SLURM would refuse the job"
            for r in reservations if r.admits(user) is False}


def minutes_left(reservation: SlurmReservation, now: float) -> int | None:
    """Whole minutes from when a job could start in it (now, or its start) to its end; None: no end."""
    if not reservation.end_time:
        return None
    return int((reservation.end_time - max(now, reservation.start_time)) // 60)
