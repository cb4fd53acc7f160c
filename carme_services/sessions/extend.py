"""Extend a running session (pure): the request, and Carme's admission of it.

An extension is admitted like a spawn (`carme_quota.admission.admit_extension`): the new time limit
within the user's runtime per server and the extra GPU-minutes within the budget's rest (the user's
own, or inside a project the project's, all members together), then within what the job's queue
allows (`partition_max_minutes`: SLURM lets root pass a partition's MaxTime) and within its
reservation's end (SLURM ends a job with its reservation). Only then does the service run
`scontrol update JobId=J TimeLimit=N` as root, and SLURM's answer decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from carme_quota.admission import Usage, admit_extension
from carme_quota.limits import LIMIT_FIELDS, Limits, ProjectTemplate
from carme_slurm.jobs import SlurmJob

from .cards import duration_words
from .errors import InputError


@dataclass(frozen=True)
class Refused:
    """Carme refuses the extension (HTTP 403): the limit it would break, in words."""

    limit: str  # a key of LIMIT_FIELDS, or "partition", "reservation"
    message: str

    def to_dict(self) -> dict:
        label = LIMIT_FIELDS[self.limit][0] if self.limit in LIMIT_FIELDS else self.limit
        return {"limit": self.limit, "label": label, "message": self.message}


def parse_extend(body: Mapping, caller: str, most: int) -> tuple[int, str]:
    """{"minutes": N[, "user": U]} -> (N, U); InputError naming the field otherwise."""
    unknown = sorted(set(body) - {"minutes", "user"})
    if unknown:
        raise InputError(unknown[0], "unknown field (fields: minutes, user)")
    minutes = body.get("minutes")
    if isinstance(minutes, str) and minutes.strip().isdigit():
        minutes = int(minutes.strip())  # a form's field
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= most:
        raise InputError("minutes", f"must be a whole number of minutes from 1 to {most}")
    user = body.get("user", caller)
    if not isinstance(user, str) or not user or len(user) > 255:
        raise InputError("user", "must be a user name")
    return minutes, user


def current_limit(view_limit: int | None, snapshot_started: float, ours: tuple[int, float] | None) -> int | None:
    """The job's time limit now: the one this service set, until a snapshot begun after that shows
    SLURM's own (which then decides, whoever changed it since)."""
    if ours is not None and ours[1] >= snapshot_started:
        return ours[0]
    return view_limit


def extension_refusal(job: SlurmJob, limit_minutes: int, extra: int, limits: Limits, usage: Usage,
                      template: ProjectTemplate | None = None, project_usage: Usage | None = None,
                      partition_max: int | None = None, reservation_end: int | None = None,
                      reservation: str = "") -> Refused | None:
    """None if `job` (time limit `limit_minutes`) may run `extra` minutes longer; else the first
    limit it breaks: the user's (runtime per server, GPU-hours), the project's GPU-hours, the queue's
    most, the reservation's end."""
    refusal = admit_extension(job.gpus, limit_minutes, extra, limits, usage)
    if refusal is None and template is not None and template.gpu_hours is not None:
        refusal = admit_extension(job.gpus, limit_minutes, extra, Limits(gpu_hours=template.gpu_hours),
                                  project_usage or usage)
        if refusal is not None:
            refusal = replace(refusal, message=f"project {job.account}'s {refusal.message}")
    if refusal is not None:
        return Refused(refusal.limit, refusal.message)
    total = limit_minutes + extra
    if partition_max is not None and total > partition_max:
        return Refused("partition", f"queue {job.partition}: a server runs up to {duration_words(partition_max * 60)}; "
                       f"+{duration_words(extra * 60)} would make {duration_words(total * 60)}.")
    if reservation_end and job.start_time and job.start_time + total * 60 > reservation_end:
        most = max(0, (reservation_end - job.start_time) // 60 - limit_minutes)
        at = datetime.fromtimestamp(reservation_end).strftime("%Y-%m-%d %H:%M")
        return Refused("reservation", f"reservation {reservation} ends at {at}: SLURM ends the server then; "
                       + (f"+{duration_words(most * 60)} at most." if most else "no time is left to add."))
    return None
