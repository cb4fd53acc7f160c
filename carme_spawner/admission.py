"""Admission in the hub: one user's spawns pass one at a time, against the view and in-flight jobs.

`HubAdmission.slot(user)` holds the user's lock from the quota check until `sbatch` has
returned, so concurrent requests of one user cannot pass together. A job just submitted is not
in the view yet: it is counted as in flight until a snapshot begun after its submission has
been taken (then the view itself shows it, or shows it gone). Everything else comes from the
hub's one SLURM view: live jobs (`squeue`), the period's usage (`sshare`) and today's jobs
(`sacct`), both cached per interval. No SLURM call is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from carme_quota.admission import Usage, next_usage_reset
from carme_slurm import SlurmView


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
        """The user's use from the view: live jobs in any account, today's Carme servers, GPU-minutes."""
        live = {j.job_id for j in view.jobs.items.values() if j.user == user and j.is_active}
        pending_submissions = self.in_flight(view, user)
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
        today = {j.job_id for j in view.todays_jobs.items.values()
                 if j.user == user and j.name.startswith(job_name_prefix) and j.submitted and j.submitted >= midnight}
        today |= {j.job_id for j in view.jobs.items.values()
                  if j.user == user and j.name.startswith(job_name_prefix) and j.submit_time >= midnight.timestamp()}
        association = view.usage.items.get(f"{account}/{user}")
        return Usage(
            servers=len(live | pending_submissions),
            started_today=len(today | pending_submissions),
            gpu_minutes_used=association.gpu_minutes_used if association else 0.0,
            gpu_minutes_running=association.gpu_minutes_running if association else 0.0,
            resets_at=next_usage_reset(period, datetime.now()),
        )


#: the hub's one instance
HUB_ADMISSION = HubAdmission()
