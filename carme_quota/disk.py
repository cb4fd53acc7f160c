"""Disk quotas on the global file system (pure): BeeGFS's `beegfs-ctl` argv and output, the plan, the words.

The file system holds disk limits, as SLURM holds the others: Carme's policy gives every user a
limit of bytes and files (`disk_gib`, `disk_inodes`: role default, then the user's override) and
every project's group one (the project template's), the disk pass of the carme-quota service
writes them with `beegfs-ctl --setquota` and reads the use back with `beegfs-ctl --getquota`.
What it read last is kept in the quota store only to show it (usage page, spawn form); every pass
replaces it, so it never becomes a second ledger.

BeeGFS's syntax (beegfs-ctl 7, `ModeGetQuotaInfo` / `ModeSetQuota`):

    beegfs-ctl --getquota --uid --list 1001,1002 --csv --storagepoolid=1 [--mount=/beegfs]
      name,id,size,hard,files,hard
      alice,1001,1073741824,10737418240,12,unlimited       # bytes; "unlimited"; files "-" or "N+"
    beegfs-ctl --setquota --uid 1001 --sizelimit=10737418240 --inodelimit=unlimited --storagepoolid=1

The drift rule is the one of `carme_quota.sacctmgr`: with S the file system's limit now, D the
policy's and L what the pass set last, S == D needs nothing, S == L (or never set by Carme) is set
to D, anything else was changed by hand and is reported, not overwritten (unless asked). A limit
the policy leaves unset is only cleared (`unlimited`) where Carme had set one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .limits import ProjectTemplate

GIB = 1024**3
KINDS = {"user": "--uid", "group": "--gid"}
CSV_HEADER = "name,id,size,hard,files,hard"
_ROW = re.compile(r"(?P<name>[^,\s]+),(?P<id>\d+),(?P<size>\d+),(?P<hard>\d+|unlimited),"
                  r"(?P<files>\d+\+?|-),(?P<ihard>\d+|unlimited)")
_MOUNT = re.compile(r"/[A-Za-z0-9._/-]*")

Key = tuple[str, int]  # (kind, numeric id)
Wanted = tuple[int | None, int | None]  # (bytes, files); None: no limit


@dataclass(frozen=True)
class DiskUse:
    """One user's or group's use and limits on the file system, as read."""

    kind: str  # "user" or "group"
    name: str
    id: int
    used_bytes: int
    limit_bytes: int | None = None  # None: no limit
    used_inodes: int | None = None  # None: the file system did not count them
    limit_inodes: int | None = None
    exact: bool = True  # False: a bounded scan stopped early; the use is at least this
    measured_at: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    def reached(self) -> list[str]:
        """Which limits the use has reached ("disk space", "files")."""
        out = []
        if self.limit_bytes is not None and self.used_bytes >= self.limit_bytes:
            out.append("disk space")
        if self.limit_inodes is not None and self.used_inodes is not None and self.used_inodes >= self.limit_inodes:
            out.append("files")
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "id": self.id, "used_bytes": self.used_bytes,
                "limit_bytes": self.limit_bytes, "used_inodes": self.used_inodes, "limit_inodes": self.limit_inodes,
                "exact": self.exact, "measured_at": self.measured_at.isoformat() if self.measured_at else None,
                "reached": self.reached()}

    @classmethod
    def from_dict(cls, data: dict) -> DiskUse:
        """Back from `to_dict` (an API answer): `reached` is derived, `measured_at` parsed."""
        at = data.get("measured_at")
        return cls(**{k: v for k, v in data.items() if k not in ("reached", "measured_at")},
                   measured_at=datetime.fromisoformat(at) if at else None)


@dataclass(frozen=True)
class DiskChange:
    """One limit the pass sets, or drift it reports."""

    kind: str
    name: str
    id: int
    old: Wanted
    new: Wanted
    drift: bool = False  # changed by hand since Carme set it: reported
    overwritten: bool = False  # drift set back to the policy anyway (overwrite_drift)

    @property
    def applies(self) -> bool:
        return not self.drift or self.overwritten


def limit_bytes(gib: float | None) -> int | None:
    return None if gib is None else round(gib * GIB)


def group_limits(template: ProjectTemplate) -> Wanted:
    """A project template's disk limits for the project's group: (bytes, files)."""
    return (limit_bytes(template.disk_gib), template.disk_inodes)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r:.20}")
    return kind


def _common(command: str, pool: int, mount: str) -> list[str]:
    if not isinstance(pool, int) or isinstance(pool, bool) or not 1 <= pool <= 65535:
        raise ValueError(f"storage_pool: must be a BeeGFS storage pool id (1-65535), got {pool!r:.20}")
    if mount and not _MOUNT.fullmatch(mount) or ".." in mount.split("/"):
        raise ValueError(f"mount: must be an absolute path without '..', got {mount!r:.80}")
    return [f"--storagepoolid={pool}", *([f"--mount={mount}"] if mount else [])]


def getquota_argv(command: str, kind: str, ids: Iterable[int], pool: int = 1, mount: str = "") -> list[str]:
    """The read of `ids`' use and limits (one call per kind), in bytes (`--csv`)."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        raise ValueError("ids: at least one id")
    return [command, "--getquota", KINDS[_check_kind(kind)], "--list", ",".join(map(str, ids)), "--csv",
            *_common(command, pool, mount)]


def setquota_argv(command: str, kind: str, id_: int, wanted: Wanted, pool: int = 1, mount: str = "") -> list[str]:
    """The write of one id's limits; None becomes `unlimited` (both limits are required by beegfs-ctl)."""
    size, files = wanted
    for what, value in (("size limit", size), ("inode limit", files)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{what}: must be a whole number above 0 or None, got {value!r:.20}")
    return [command, "--setquota", KINDS[_check_kind(kind)], str(int(id_)),
            f"--sizelimit={'unlimited' if size is None else size}",
            f"--inodelimit={'unlimited' if files is None else files}", *_common(command, pool, mount)]


def parse_getquota_csv(text: str, kind: str, measured_at: datetime | None = None) -> dict[Key, DiskUse]:
    """`beegfs-ctl --getquota ... --csv` output: {(kind, id): DiskUse}. A row that is not BeeGFS's format
    is a ValueError naming it (never a guess); pool headings and blank lines are skipped."""
    _check_kind(kind)
    out: dict[Key, DiskUse] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line == CSV_HEADER or line.startswith(("Quota information for storage pool", "Using ")):
            continue
        m = _ROW.fullmatch(line)
        if not m:
            raise ValueError(f"beegfs-ctl --getquota: not a quota row: {line[:120]!r}")
        files = m["files"]
        use = DiskUse(kind, m["name"], int(m["id"]), int(m["size"]),
                      None if m["hard"] == "unlimited" or m["hard"] == "0" else int(m["hard"]),
                      None if files == "-" else int(files.rstrip("+")),
                      None if m["ihard"] == "unlimited" or m["ihard"] == "0" else int(m["ihard"]),
                      exact=not files.endswith("+"), measured_at=measured_at)
        out[use.key] = use
    return out


def disk_plan(wanted: Mapping[Key, tuple[str, Wanted]], current: Mapping[Key, DiskUse],
              last: Mapping[Key, Wanted], overwrite_drift: bool = False) -> list[DiskChange]:
    """The limits to set (and the drift to report) for `wanted`: {(kind, id): (name, (bytes, files))}.
    An id the file system did not report is set as if it had no limits."""
    changes = []
    for key, (name, new) in sorted(wanted.items()):
        use = current.get(key)
        now: Wanted = (use.limit_bytes, use.limit_inodes) if use else (None, None)
        if now == new or (new == (None, None) and key not in last):
            continue
        drift = key in last and now != tuple(last[key])
        changes.append(DiskChange(key[0], name, key[1], now, new, drift, drift and overwrite_drift))
    return changes


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def use_words(use: DiskUse) -> str:
    """'12.0 of 10.0 GiB, 1,200 of 100,000 files' (what the form and the usage page show)."""
    words = ("at least " if not use.exact else "") + _gib(use.used_bytes)
    words += f" of {_gib(use.limit_bytes)}" if use.limit_bytes is not None else " (no limit)"
    if use.used_inodes is not None:
        words += f", {use.used_inodes:,} files" + (f" of {use.limit_inodes:,}" if use.limit_inodes is not None else "")
    return words


def over_words(use: DiskUse) -> str:
    """Why writes may fail, for a user or group over a limit; '' when under every limit."""
    reached = use.reached()
    if not reached:
        return ""
    whose = "your" if use.kind == "user" else f"project group {use.name}'s"
    return (f"Disk quota: {whose} {' and '.join(reached)} limit is reached on the global file system "
            f"({use_words(use)}): writes there may fail until files are deleted.")
