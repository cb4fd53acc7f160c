"""Admission in the hub: one user's spawns pass one at a time, against the view and in-flight jobs.

`HubAdmission.slot(user)` holds the user's lock from the quota check until `sbatch` has
returned, so concurrent requests of one user cannot pass together. A job just submitted is not
in the view yet: it is counted as in flight until a snapshot begun after its submission has
been taken after `sbatch` returned (then the view itself shows it, or shows it gone).
Everything else comes from the hub's one SLURM view: live jobs (`squeue`), the period's usage
(`sshare`) and the recent jobs (`sacct`), cached per interval and grouped by user, so a spawn
reads its user's jobs only. No SLURM call is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from prometheus_client import Counter

from carme_quota.admission import Usage, user_usage
from carme_slurm import SlurmView

#: at /hub/metrics: spawns the quota refused, by the limit they broke (gpus_per_job, gpu_hours, ...)
QUOTA_REFUSALS = Counter("carme_quota_refusals", "Spawns refused by a quota, by the limit", ["limit"])


class HubAdmission:
    """The hub's per-user locks and submissions in flight (one instance per hub process)."""

    def __init__(self):
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_flight: dict[str, dict[str, float]] = {}  # slurm user -> {job id: submitted at}

    @contextlib.asynccontextmanager
    async def slot(self, user: str):
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:
            yield self

    def submitted(self, user: str, job_id: str, at: float) -> None:
        self._in_flight.setdefault(user, {})[job_id] = at

    def in_flight(self, view: SlurmView, user: str) -> set[str]:
        """Job ids submitted by `user` that no snapshot begun after their submission has seen yet."""
        jobs = self._in_flight.get(user, {})
        for job_id, at in list(jobs.items()):
            if view.jobs.snapshot_started > at:
                del jobs[job_id]
        return set(jobs)

    def usage(self, view: SlurmView, user: str, account: str, job_name_prefix: str, period: str) -> Usage:
        """The user's use from the view (see `carme_quota.admission.user_usage`), in-flight jobs included."""
        # the user's own jobs only (the view groups them once per snapshot): a spawn never scans everyone's
        return user_usage(user, account, view.jobs.grouped.get(user, ()), view.usage.items,
                          view.recent_jobs.grouped.get(user, ()), job_name_prefix, period, datetime.now(),
                          self.in_flight(view, user))


#: the hub's one instance
HUB_ADMISSION = HubAdmission()
