"""A spawn once its options are parsed (`PreparedSpawn`), and the user's quota for it (`UserQuota`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from carme_quota.disk import DiskUse
from carme_quota.limits import Limits, ProjectTemplate

from .accounts import JobAccount
from .images import CatalogImage
from .options import SpawnLimits, SpawnRequest


@dataclass(frozen=True)
class PreparedSpawn:
    """A parsed spawn: who it runs as, what it asks for, and the image's site settings."""

    account: JobAccount
    request: SpawnRequest
    image: CatalogImage
    options: dict  # the options it was parsed from (a budget may shorten their runtime)
    images: tuple[CatalogImage, ...]
    limits: SpawnLimits
    quota: UserQuota


class UserQuota(NamedTuple):
    """A user's quota for one spawn, from the role's defaults and one read of the quota store."""

    limits: Limits  # effective
    projects: tuple[str, ...]  # the projects the user may choose
    template: ProjectTemplate | None  # of the project asked for, if the user is a member
    disk: tuple[DiskUse, ...] = ()  # the disk pass's last reading of the user and their projects' groups
