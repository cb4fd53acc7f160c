"""The site's mounts: which file systems a user's container gets, checked once (pure).

`CarmeSpawner.mounts` lists them, each a mapping:

    {source: /beegfs/home/{username}, target: /home/{username}}            # everyone
    {source: /beegfs/datasets, target: /datasets, read_only: true}           # read-only data sets
    {source: /beegfs/projects/vision, target: /projects/vision, projects: [vision]}  # a quota project's members
    {source: /beegfs/groups/optics, target: /groups/optics, groups: [optics]}        # a hub group's members
    {source: /beegfs/admin, target: /admin, roles: [admin]}
    {source: /opt/licenses, target: /licenses, read_only: true, required: false}     # bound only if present

`source` and `target` may hold {username} and {home}; both are absolute, without `..`, and the
target is never the container's system (`container_catalog.fields.SYSTEM_PATHS`): the hub stops at
start naming the entry and key otherwise (`parse_mounts`). `roles`, `groups` and `projects`
narrow who gets a mount (any of them matching; none given: everyone). A required mount whose
source is missing when a server starts fails the spawn naming the path (`missing_sources`), so a
container never starts without the user's data. Every bind reaches `apptainer exec --bind`
through the batch script's one builder (`bind_specs`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from carme_core.roles import ROLES
from container_catalog.fields import FieldError, bind

KEYS = ("source", "target", "read_only", "roles", "groups", "projects", "required")
FILLS = ("username", "home")


class MountMissing(ValueError):
    """A required mount's source is not there: the spawn fails naming it."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    required: bool = True

    def applies_to(self, role: str, groups: Iterable[str], projects: Iterable[str]) -> bool:
        if not (self.roles or self.groups or self.projects):
            return True
        return role in self.roles or bool(set(self.groups) & set(groups)) or bool(set(self.projects) & set(projects))

    def filled(self, fill: Mapping[str, str]) -> Mount:
        return Mount(self.source.format(**fill), self.target.format(**fill), self.read_only, self.roles, self.groups,
                     self.projects, self.required)

    @property
    def spec(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


def _names(where: str, value, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: must be a list of names")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown {', '.join(unknown)} (known: {', '.join(allowed)})")
    return tuple(value)


def parse_mount(raw, where: str) -> Mount:
    """One entry of the setting, checked (ValueError naming `where` and the key)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be a mapping with source and target")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {', '.join(unknown)} (keys: {', '.join(KEYS)})")
    for key in ("source", "target"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"{where}.{key}: is required (an absolute path)")
    flags = {}
    for key, default in (("read_only", False), ("required", True)):
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            raise ValueError(f"{where}.{key}: must be true or false")
    sample = {name: "x" for name in FILLS}  # the placeholders' shape; real values are checked per spawn
    for key in ("source", "target"):
        try:
            filled = raw[key].format(**sample)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{where}.{key}: only {{username}} and {{home}} may be filled in, got {raw[key]!r}") from None
        try:
            bind(f"{filled}:{filled}" if key == "target" else f"{filled}:/carme-check", f"{where}.{key}")
        except FieldError as e:
            raise ValueError(str(e).replace("target must", "must").replace("source must", "must")) from None
    return Mount(raw["source"], raw["target"], flags["read_only"], _names(f"{where}.roles", raw.get("roles"), ROLES),
                 _names(f"{where}.groups", raw.get("groups")), _names(f"{where}.projects", raw.get("projects")),
                 flags["required"])


def parse_mounts(raw, where: str = "CarmeSpawner.mounts") -> tuple[Mount, ...]:
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"{where}: must be a list of mounts")
    mounts = tuple(parse_mount(entry, f"{where}[{i}]") for i, entry in enumerate(raw))
    targets = [m.target for m in mounts]
    for i, target in enumerate(targets):
        if target in targets[:i]:
            raise ValueError(f"{where}[{i}].target: {target} is the target of an earlier mount too")
    return mounts


def mounts_for(mounts: Iterable[Mount], role: str, groups: Iterable[str], projects: Iterable[str],
               fill: Mapping[str, str]) -> tuple[Mount, ...]:
    """The user's mounts with {username} and {home} filled in; a filled path is checked again (a
    user name or home could make it leave its place)."""
    groups, projects = tuple(groups), tuple(projects)
    out = []
    for m in mounts:
        if m.applies_to(role, groups, projects):
            filled = m.filled(fill)
            try:
                bind(filled.spec, "mount")
            except FieldError as e:
                raise ValueError(f"mount {m.source} -> {m.target} for this user: {e}") from None
            out.append(filled)
    return tuple(out)


def missing_sources(mounts: Iterable[Mount], exists: Callable[[str], bool] = os.path.isdir) -> list[str]:
    """The required mounts' sources that do not exist (or are not directories)."""
    return [m.source for m in mounts if m.required and not exists(m.source)]


def bind_specs(mounts: Iterable[Mount], exists: Callable[[str], bool] = os.path.exists) -> tuple[str, ...]:
    """apptainer --bind specs: required mounts, and optional ones whose source exists."""
    return tuple(m.spec for m in mounts if m.required or exists(m.source))
