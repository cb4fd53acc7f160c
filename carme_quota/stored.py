"""One user's part of the quota store (override, projects, the chosen project's template), read
without failing: the hub's spawns and the services that explain or check budgets read it this way.

The carme-quota service owns and migrates the store; a reader that finds it missing or not yet
migrated gets nothing (and a warning): the role's defaults still hold, and SLURM holds every limit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import cache

from carme_core.db import ServiceDatabase

from .disk import DiskUse
from .limits import Limits, ProjectTemplate
from .store import MIGRATIONS, SERVICE, QuotaStore


@cache
def _store(db_url: str) -> QuotaStore:
    return QuotaStore(ServiceDatabase(db_url, SERVICE, MIGRATIONS))  # the carme-quota service migrates it


@dataclass(frozen=True)
class StoredQuota:
    """What the quota store holds for one user: their override, their projects, the chosen one's template."""

    override: Limits | None = None
    projects: tuple[str, ...] = ()
    template: ProjectTemplate | None = None  # of the project asked for, if the user is a member
    disk: tuple[DiskUse, ...] = ()  # the disk pass's last reading: the user's, then their projects' groups'


def _stored(db_url: str, user: str, project: object) -> StoredQuota:
    store = _store(db_url)
    projects = tuple(store.projects_of(user))
    template = store.project(project).template if isinstance(project, str) and project in projects else None
    disk = (*store.disk_usage("user", [user]), *store.disk_usage("group", projects))
    return StoredQuota(store.override(user), projects, template, disk)


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
