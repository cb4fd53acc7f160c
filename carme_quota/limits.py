"""The limits Carme keeps, and the one rule that composes a user's effective limits.

Every limit is held by SLURM (written there by the sync, see `carme_quota.sacctmgr`), except
`jobs_per_day`, for which SLURM has no limit: Carme checks it from accounting before a spawn.

| field               | unit          | SLURM mechanism (on the user's association in the account)   |
|---------------------|---------------|--------------------------------------------------------------|
| gpus_per_job        | GPUs          | MaxTRESPerJob=gres/gpu=N                                     |
| max_servers         | jobs          | MaxJobs=N and MaxSubmitJobs=N                                |
| gpu_hours           | GPU-hours     | GrpTRESMins=gres/gpu=N*60, per PriorityUsageResetPeriod      |
| max_runtime_minutes | minutes       | MaxWallDurationPerJob=N                                      |
| jobs_per_day        | jobs started  | none: Carme counts the day's starts in `sacct`               |
| priority            | points        | Priority=N (the association's priority factor)               |
| scratch_gib         | GiB           | --tmp on the job (its nodes' TmpDisk); Carme refuses more    |
| disk_gib            | GiB           | the file system's user quota (`carme_quota.disk`), not SLURM |
| disk_inodes         | files         | the file system's user quota (`carme_quota.disk`), not SLURM |

The rule (README, "Quotas"): a field's effective value is the user's override if the override
sets it, else the project's template if the job runs in a project and the template sets it,
else the role's default; unset everywhere means no limit. A project's GPU-hours are its own
budget for all members together (the project account's GrpTRESMins), so they never become a
member's personal budget, and a member's personal budget does not apply inside the project.
Disk limits are a user's own (role default, then override) wherever their jobs run; a project's
template sets its group's disk quota, never a member's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

#: field -> (label shown to users, unit, largest value accepted)
LIMIT_FIELDS: dict[str, tuple[str, str, float]] = {
    "gpus_per_job": ("GPUs per server", "GPUs", 1024),
    "max_servers": ("servers at once", "servers", 1000),
    "gpu_hours": ("GPU-hours per period", "GPU-hours", 10_000_000),
    "max_runtime_minutes": ("runtime per server", "minutes", 366 * 24 * 60),
    "jobs_per_day": ("servers started per day", "servers", 100_000),
    "priority": ("priority", "points", 1_000_000),
    "scratch_gib": ("job scratch per server", "GiB", 1_000_000),
    "disk_gib": ("disk space on the global file system", "GiB", 100_000_000),
    "disk_inodes": ("files on the global file system", "files", 10**12),
}
_INT_FIELDS = {"gpus_per_job", "max_servers", "max_runtime_minutes", "jobs_per_day", "priority", "disk_inodes"}
#: limits the file system holds (the disk pass writes them), not SLURM's associations
DISK_FIELDS = ("disk_gib", "disk_inodes")


class LimitError(ValueError):
    """A limit value was refused; str() names the field and the rule."""


@dataclass(frozen=True)
class Limits:
    """One layer of limits (a role default, a project's member template or a user override).

    None means "not set at this layer"; after composition it means "no limit".
    """

    gpus_per_job: int | None = None
    max_servers: int | None = None
    gpu_hours: float | None = None
    max_runtime_minutes: int | None = None
    jobs_per_day: int | None = None
    priority: int | None = None
    scratch_gib: float | None = None
    disk_gib: float | None = None
    disk_inodes: int | None = None

    def __post_init__(self):
        for f in fields(self):
            check_limit(f.name, getattr(self, f.name))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, where: str = "limits") -> Limits:
        """Limits from settings or an API body; LimitError naming `where`.field on a bad value."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise LimitError(f"{where}: must be a mapping of limit names to values")
        unknown = sorted(str(k)[:40] for k in raw if k not in LIMIT_FIELDS)
        if unknown:
            raise LimitError(f"{where}: unknown limit {', '.join(unknown)} (known: {', '.join(LIMIT_FIELDS)})")
        values = {}
        for name, value in raw.items():
            try:
                values[name] = check_limit(name, value)
            except LimitError as e:
                raise LimitError(f"{where}.{e}") from None
        return cls(**values)

    def over(self, base: Limits) -> Limits:
        """This layer on top of `base`: the fields set here win, the others come from `base`."""
        return replace(base, **{k: v for k, v in self.to_dict().items() if v is not None})

    def to_dict(self) -> dict[str, int | float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def set_fields(self) -> dict[str, int | float]:
        return {k: v for k, v in self.to_dict().items() if v is not None}


def check_limit(name: str, value: object, field: str | None = None) -> int | float | None:
    """Return `value` if it is a valid value for limit `name` (None = unset); else LimitError
    naming `field` (default: `name`)."""
    if value is None:
        return None
    _label, unit, largest = LIMIT_FIELDS[name]
    name, kind = field or name, name
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LimitError(f"{name}: must be a number of {unit} or null, got {type(value).__name__}")
    if kind in _INT_FIELDS and not float(value).is_integer():
        raise LimitError(f"{name}: must be a whole number of {unit}, got {value}")
    if not math.isfinite(value) or not 0 <= value <= largest:
        raise LimitError(f"{name}: must be between 0 and {largest:g} {unit}, got {value}")
    return int(value) if kind in _INT_FIELDS else float(value)


@dataclass(frozen=True)
class ProjectTemplate:
    """A project's resource template: its members' per-job limits and the project-wide ones."""

    gpus_at_once: int | None = None  # all members together: the account's GrpTRES=gres/gpu=N
    gpus_per_job: int | None = None
    max_runtime_minutes: int | None = None
    gpu_hours: float | None = None  # the project's budget per period: the account's GrpTRESMins
    partitions: tuple[str, ...] = ()  # empty: every partition the member may use
    disk_gib: float | None = None  # the project group's quota on the global file system
    disk_inodes: int | None = None

    def __post_init__(self):
        check_limit("disk_gib", self.disk_gib)
        check_limit("disk_inodes", self.disk_inodes)
        check_limit("gpus_per_job", self.gpus_at_once, "gpus_at_once")
        check_limit("gpus_per_job", self.gpus_per_job)
        check_limit("max_runtime_minutes", self.max_runtime_minutes)
        check_limit("gpu_hours", self.gpu_hours)
        if not isinstance(self.partitions, tuple) or not all(isinstance(p, str) and p for p in self.partitions):
            raise LimitError("partitions: must be a list of partition names")

    def member_limits(self) -> Limits:
        """What the template sets for each member's jobs in the project."""
        return Limits(gpus_per_job=self.gpus_per_job, max_runtime_minutes=self.max_runtime_minutes)


def effective_limits(
    role_default: Limits,
    project: ProjectTemplate | None = None,
    user_override: Limits | None = None,
) -> Limits:
    """The user's limits for a job in `project` (None: the user's own account). See the module doc."""
    base = role_default
    if project is not None:
        base = replace(project.member_limits().over(role_default), gpu_hours=None)
    override = user_override or Limits()
    if project is not None:
        override = replace(override, gpu_hours=None)
    return override.over(base)

