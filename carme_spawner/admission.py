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
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from carme_core.db import ServiceDatabase
from carme_quota.admission import Usage, user_usage
from carme_quota.limits import Limits, ProjectTemplate
from carme_quota.store import MIGRATIONS, SERVICE, QuotaStore
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
        """The user's use from the view (see `carme_quota.admission.user_usage`), in-flight jobs included."""
        # the user's own jobs only (the view groups them once per snapshot): a spawn never scans everyone's
        return user_usage(user, account, view.jobs.grouped.get(user, ()), view.usage.items,
                          view.recent_jobs.grouped.get(user, ()), job_name_prefix, period, datetime.now(),
                          self.in_flight(view, user))


#: the hub's one instance
HUB_ADMISSION = HubAdmission()


@cache
def _store(db_url: str) -> QuotaStore:
    return QuotaStore(ServiceDatabase(db_url, SERVICE, MIGRATIONS))  # the carme-quota service migrates it


@dataclass(frozen=True)
class StoredQuota:
    """What the quota store holds for one user: their override, their projects, the chosen one's template."""

    override: Limits | None = None
    projects: tuple[str, ...] = ()
    template: ProjectTemplate | None = None  # of the project asked for, if the user is a member


def _stored(db_url: str, user: str, project: object) -> StoredQuota:
    store = _store(db_url)
    projects = tuple(store.projects_of(user))
    template = store.project(project).template if isinstance(project, str) and project in projects else None
    return StoredQuota(store.override(user), projects, template)


async def stored_quota(db_url: str, user: str, project: object, log: logging.Logger) -> StoredQuota:
    """The store's part of `user`'s quota (for a job in `project`, if they are its member), read in a
    worker thread. Nothing (and a warning) if the store cannot be read: the role's defaults still
    hold in the hub, and SLURM holds every limit anyway."""
    if not db_url:
        return StoredQuota()
    try:
        return await asyncio.to_thread(_stored, db_url, user, project)
    except Exception as e:  # noqa: BLE001 - a store that cannot be read must not stop spawns
        log.warning("quota store %s not readable, using the role's defaults: %s", db_url.split("@")[-1], e)
        return StoredQuota()
