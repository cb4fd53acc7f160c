"""carme-quota's disk pass: the policy's disk limits onto the file system, and its use read back.

One pass (run with every sync): who has which disk limit (`wanted`, pure, from the hub's users, the
overrides and the projects), one read of the use and limits per kind of id (the backend), the plan
(`carme_quota.disk.disk_plan`: the drift rule), the writes, and the reading saved for the pages and
the spawn form. Backends:

- `beegfs`: `beegfs-ctl --getquota`/`--setquota` (the file system enforces the limits);
- `directory`: a bounded scan of each user's and project's directory in a worker thread (sites
  without a quota-capable file system): it measures only, nothing enforces the limits there, so
  the pages and the form warn but writes do not fail.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from carme_quota.disk import (
    DiskChange,
    DiskUse,
    Key,
    Wanted,
    disk_plan,
    getquota_argv,
    limit_bytes,
    parse_getquota_csv,
    setquota_argv,
)
from carme_quota.limits import Limits, effective_limits
from carme_slurm import command_env, run_command

Entries = Mapping[Key, tuple[str, Wanted]]  # (kind, id) -> (name, (bytes, files))


def wanted_limits(users: Mapping[str, str], role_defaults: Mapping[str, Limits], overrides: Mapping[str, Limits],
                  project_limits: Mapping[str, Wanted], uid_of, gid_of) -> tuple[dict[Key, tuple[str, Wanted]], list[str]]:
    """Every user's and project group's disk limits (pure but for the two id look-ups passed in);
    and the names that have no id on this host (left out, reported)."""
    wanted: dict[Key, tuple[str, Wanted]] = {}
    missing = []
    for user, role in sorted(users.items()):
        uid = uid_of(user)
        if uid is None:
            missing.append(f"user {user}")
            continue
        lim = effective_limits(role_defaults.get(role, Limits()), None, overrides.get(user))
        wanted[("user", uid)] = (user, (limit_bytes(lim.disk_gib), lim.disk_inodes))
    for project, limits in sorted(project_limits.items()):
        gid = gid_of(project)
        if gid is None:
            missing.append(f"group of project {project}")
            continue
        wanted[("group", gid)] = (project, limits)
    return wanted, missing


def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def gid_of(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class BeegfsBackend:
    """The limits live in BeeGFS: read with --getquota (one call per kind), written with --setquota."""

    enforced = True

    def __init__(self, command: str, pool: int, mount: str, timeout: float = 60):
        self.command, self.pool, self.mount, self.timeout = command, pool, mount, timeout

    async def read(self, entries: Entries) -> dict[Key, DiskUse]:
        out: dict[Key, DiskUse] = {}
        now = datetime.now(timezone.utc)
        for kind in ("user", "group"):
            ids = [i for k, i in entries if k == kind]
            if ids:
                text = await run_command(getquota_argv(self.command, kind, ids, self.pool, self.mount),
                                         env=command_env(), timeout=self.timeout)
                out.update(parse_getquota_csv(text, kind, now))
        # the rows carry the file system's names; Carme shows its own (a project's, not its group's)
        return {key: replace(use, name=entries[key][0]) for key, use in out.items() if key in entries}

    async def write(self, change: DiskChange) -> None:
        await run_command(setquota_argv(self.command, change.kind, change.id, change.new, self.pool, self.mount),
                          env=command_env(), timeout=self.timeout)


def scan(path: Path, max_entries: int, deadline: float) -> tuple[int, int, bool]:
    """Allocated bytes and entries under `path` (not following links), stopping at `max_entries` or
    `deadline` (time.monotonic()): (bytes, entries, exact). A missing directory uses nothing."""
    used = entries = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    if entries > max_entries or time.monotonic() > deadline:
                        return used, entries - 1, False
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return used, entries, True


class DirectoryBackend:
    """No quota-capable file system: each user's and project's directory is measured (bounded, in a
    worker thread); its limits are the policy's, shown and warned about but not enforced."""

    enforced = False

    def __init__(self, user_dir: str, project_dir: str, max_entries: int, max_seconds: float):
        self.dirs = {"user": user_dir, "group": project_dir}
        self.max_entries, self.max_seconds = max_entries, max_seconds

    def path(self, kind: str, name: str) -> Path | None:
        template = self.dirs[kind]
        return Path(template.format(username=name, project=name)) if template else None

    def _read(self, entries: Entries) -> dict[Key, DiskUse]:
        out = {}
        for key, (name, (size, files)) in entries.items():
            path = self.path(key[0], name)
            if path is None:
                continue
            used, count, exact = scan(path, self.max_entries, time.monotonic() + self.max_seconds)
            out[key] = DiskUse(key[0], name, key[1], used, size, count, files, exact, datetime.now(timezone.utc))
        return out

    async def read(self, entries: Entries) -> dict[Key, DiskUse]:
        return await asyncio.to_thread(self._read, entries)

    async def write(self, change: DiskChange) -> None:  # the plan never asks: read() reports the policy's limits
        raise RuntimeError("the directory backend measures only; it cannot set limits")


async def run_disk_pass(backend, wanted: Entries, last: Mapping[Key, Wanted], overwrite_drift: bool, log
                        ) -> tuple[list[DiskChange], dict[Key, DiskUse], dict[Key, Wanted]]:
    """Read, plan, write, read again if anything was written: (the plan, the reading, what is applied now)."""
    current = await backend.read(wanted)
    changes = disk_plan(wanted, current, last, overwrite_drift)
    for change in changes:
        if change.applies:
            await backend.write(change)
            log.info("disk: %s %s (%d) limits %s -> %s%s", change.kind, change.name, change.id, change.old,
                     change.new, " (drift overwritten)" if change.drift else "")
        else:
            log.warning("disk drift: %s %s (%d) has limits %s on the file system, Carme's policy says %s",
                        change.kind, change.name, change.id, change.old, change.new)
    if any(c.applies for c in changes):
        current = await backend.read(wanted)
    drifted = {(c.kind, c.id) for c in changes if not c.applies}
    applied = {key: last[key] for key in drifted if key in last}
    for key, (_name, limits) in wanted.items():
        use = current.get(key)
        if key not in drifted and use is not None and (use.limit_bytes, use.limit_inodes) == limits \
                and (limits != (None, None) or key in last):
            applied[key] = limits
    return changes, current, applied


def keys_to_json(applied: Mapping[Key, Wanted]) -> dict[str, list]:
    return {f"{kind}:{id_}": list(limits) for (kind, id_), limits in applied.items()}


def keys_from_json(data: Mapping[str, list] | None) -> dict[Key, Wanted]:
    out = {}
    for text, limits in (data or {}).items():
        kind, _, id_ = text.partition(":")
        out[(kind, int(id_))] = (limits[0], limits[1])
    return out
