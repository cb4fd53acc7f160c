"""carme-reservations: GPUs booked ahead as real SLURM reservations.

    python -m carme_services.reservations [--help-all]

Users book GPUs for a window (start, end, count, type, partition) on a week calendar or through
the REST API. The service checks the booking (`booking`: times, DST, the role's rules; the
GPU-hour budget; `capacity`: the GPUs per node and type against other bookings, SLURM's own
reservations, running jobs and drained nodes), keeps it in its store (`store`) and, once approved
(at once, or by an admin for the roles in `approval_roles`), creates a SLURM reservation with
`scontrol create reservation` (built by `carme_slurm.reservation_argv`) for that user only. The
spawn form offers the user's reservations, and the job runs inside with `--reservation=NAME`.
A sync (`slurm_sync`) at start and every `sync_interval` closes ended bookings, marks those whose
reservation was deleted by hand as gone and reports Carme-named reservations without a booking.
Users get their bookings as an .ics feed (`ics`) behind a token of their own.

SLURM 22.05 reserves nodes (or cores), not GPUs: a booking then holds whole nodes, the fewest
GPUs that fit. `reserve_gpus_as_tres` asks for `TRES=gres/gpu:TYPE=N` on a SLURM that can.
"""

from .service import ReservationService, hub_service

main = ReservationService.launch_instance

__all__ = ["ReservationService", "hub_service", "main"]
