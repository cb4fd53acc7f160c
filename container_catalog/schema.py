"""The catalog entry model and its validation (pure: mappings in, frozen entries or problems out).

An entry describes one container image users may run: id, display name, image reference,
interface, the web interfaces it offers (`interfaces`, see `web_apps`), GPU need, tags, allowed
roles, extra binds and environment, maintainer, enabled. It
comes from a site catalog file (section "site") or from the user-defined store (sections "user",
one per owner, and "shared", also one per owner); the latter also record their owner.

User-defined entries are stricter, whoever writes the file: `roles`, `binds` and `env` are the
site's alone (a shared entry runs in other users' jobs), and the maintainer is always the owner.
Users pick an entry by its :attr:`CatalogEntry.choice_id`: the id for site and own entries,
"<owner>/<id>" for shared ones.

:func:`parse_entry` checks every field and collects every problem; an entry that breaks any rule
is never built, so an invalid entry cannot reach a form or a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from . import fields as f
from . import web_apps
from .access import ROLES, role_may_use
from .web_apps import DEFAULT_INTERFACES, WebInterface

SECTIONS = ("site", "shared", "user")
USER_SECTIONS = ("shared", "user")
RUNNABLE_INTERFACES = ("jupyterlab",)  # others validate; they become runnable with their launchers

SITE_FIELDS = (
    "id", "name", "description", "image", "interface", "interfaces", "gpu", "gpu_types", "min_gpu_memory_gb", "tags",
    "roles", "binds", "env", "maintainer", "enabled",
)
#: what only the site may set: a user-defined entry runs in other users' jobs (binds over their
#: libraries, variables that load code, who may run it are the site's decisions)
SITE_ONLY_FIELDS = ("roles", "binds", "env")
RECORDED_FIELDS = ("owner", "section")  # written by the catalog service for user-defined entries
USER_ENTRY_FIELDS = tuple(name for name in SITE_FIELDS if name not in SITE_ONLY_FIELDS) + RECORDED_FIELDS


@dataclass(frozen=True)
class CatalogProblem:
    """Something wrong in the catalog: which file, which field, which rule."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


class InvalidEntry(ValueError):
    """An entry broke one or more rules; .problems lists them all, .field/.message the first."""

    def __init__(self, problems: tuple[CatalogProblem, ...]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)
        self.field = self.problems[0].field
        self.message = self.problems[0].message


@dataclass(frozen=True)
class BindMount:
    """One extra bind into the container: `source` on the node to `target` in the container."""

    source: str
    target: str
    mode: str = "rw"  # rw | ro

    @property
    def spec(self) -> str:
        """The `--bind` argument: "source:target:mode"."""
        return f"{self.source}:{self.target}:{self.mode}"

    def __str__(self) -> str:
        return self.spec


def owner_label(section: str, owner: str | None) -> str:
    """"shared by dave" / "added by dave" for a user-defined entry, "" for a site entry (shown next to
    its badge on the form and the catalog page)."""
    if section not in USER_SECTIONS or not owner:
        return ""
    return f"{'shared' if section == 'shared' else 'added'} by {owner}"


@dataclass(frozen=True)
class CatalogEntry:
    """One validated container image of the catalog."""

    id: str
    name: str
    image: str
    description: str = ""
    interface: str = "jupyterlab"  # jupyterlab | notebook | code-server
    #: the web interfaces the image offers in its session: JupyterLab first, then apps proxied by it
    interfaces: tuple[WebInterface, ...] = DEFAULT_INTERFACES
    gpu: str = "optional"  # required | optional | none
    gpu_types: tuple[str, ...] = ()  # SLURM gres types it runs on; () any
    min_gpu_memory_gb: int = 0  # 0: no minimum
    tags: tuple[tuple[str, str], ...] = ()  # (name, value); value "" for a plain label
    roles: tuple[str, ...] = ROLES
    binds: tuple[BindMount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    maintainer: str = ""
    enabled: bool = True
    section: str = "site"  # site | shared | user
    owner: str | None = None  # who added a user-defined entry
    source: str = field(default="", compare=False)  # the file the entry was read from

    def __post_init__(self):
        # the model keeps the rules of parse_entry for entries built in code too
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {', '.join(SECTIONS)}, got {self.section!r}")
        if self.user_defined:
            if self.roles != ROLES or self.binds or self.env:
                raise ValueError(f"a user-defined entry may not set {', '.join(SITE_ONLY_FIELDS)}")
            if self.maintainer not in ("", self.owner):
                raise ValueError(f"the maintainer of a user-defined entry is its owner {self.owner!r}")
            object.__setattr__(self, "maintainer", self.owner or "")
        if not self.interfaces or self.interfaces[0] != DEFAULT_INTERFACES[0]:
            raise ValueError("interfaces must start with jupyterlab (the session's server)")
        if self.user_defined and any(not i.builtin for i in self.interfaces):
            raise ValueError("a user-defined entry may name built-in interfaces only, not web apps with a command")

    def allowed_for(self, role: str) -> bool:
        """True if `role` may run this entry (listed in roles, or admin). Ignores `enabled`."""
        return role_may_use(self.roles, role)

    @property
    def runnable(self) -> bool:
        """True if Carme can start this entry now: enabled and an interface Carme launches."""
        return self.enabled and self.interface in RUNNABLE_INTERFACES

    @property
    def user_defined(self) -> bool:
        return self.section in USER_SECTIONS

    @property
    def owner_label(self) -> str:
        return owner_label(self.section, self.owner)

    @property
    def choice_id(self) -> str:
        """The id users pick (form, spawn options, remembered choice): the id of a site or own entry,
        "<owner>/<id>" of a shared one, so no shared entry can answer for a site id."""
        return f"{self.owner}/{self.id}" if self.section == "shared" else self.id

    @property
    def interface_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.interfaces)

    def tag(self, name: str) -> str | None:
        """The value of tag `name` ("" for a plain label), or None."""
        return dict(self.tags).get(name)

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data (JSON/YAML); parse_entry(entry.to_dict(), ...) gives the entry back."""
        data: dict[str, Any] = {
            "id": self.id, "name": self.name, "description": self.description, "image": self.image,
            "interface": self.interface, "interfaces": [i.to_data() for i in self.interfaces], "gpu": self.gpu,
            "tags": dict(self.tags), "roles": list(self.roles),
            "binds": [b.spec for b in self.binds], "env": dict(self.env), "maintainer": self.maintainer,
            "enabled": self.enabled,
        }
        if self.gpu_types:  # left out when not set, as in the files
            data["gpu_types"] = list(self.gpu_types)
        if self.min_gpu_memory_gb:
            data["min_gpu_memory_gb"] = self.min_gpu_memory_gb
        if self.user_defined:
            for name in SITE_ONLY_FIELDS:
                del data[name]
            data.update(owner=self.owner, section=self.section)
        return data


def parse_entry(
    data: Any, *, source: str = "<entry>", section: str = "site", owner: str | None = None, prefix: str = ""
) -> CatalogEntry:
    """Validate one entry mapping; return the CatalogEntry or raise InvalidEntry listing every problem.

    `source` names the file in problems, `prefix` the entry's place in it ("images[2]."). For the
    user-defined sections, `owner`/`section` in `data` must agree with the given ones (from the
    file's location); a shared entry without a given owner takes the recorded one. There,
    `roles`/`binds`/`env` are refused and the maintainer is the owner (another one is refused).
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {', '.join(SECTIONS)}, got {section!r}")
    if not isinstance(data, Mapping):
        where = prefix.rstrip(".") or "entry"
        message = f"must be a mapping of field names to values, got {f.describe(data)}"
        raise InvalidEntry((CatalogProblem(source, where, message),))
    problems: list[CatalogProblem] = []

    allowed = SITE_FIELDS if section == "site" else USER_ENTRY_FIELDS

    def check(name: str, rule, *args, default: Any = None, required: bool = False) -> Any:
        value = data.get(name) if name in allowed else None  # a refused field: one problem, below
        if value is None:
            if required:
                problems.append(CatalogProblem(source, prefix + name, "is required"))
            return default
        try:
            return rule(value, prefix + name, *args)
        except f.FieldError as e:
            problems.append(CatalogProblem(source, e.field, e.message))
            return default

    for key in data:
        if key not in allowed:
            if key in RECORDED_FIELDS:
                message = "is recorded only for user-defined entries (the catalog service sets it)"
            elif key in SITE_ONLY_FIELDS:
                message = ("is set by the site catalog only: a user-defined entry runs in other users' jobs,"
                           " so its binds, environment and roles stay the site's to decide")
            else:
                message = f"unknown field; allowed: {', '.join(allowed)}"
            problems.append(CatalogProblem(source, prefix + f.field_name(key), message))

    values = dict(
        id=check("id", f.entry_id, required=True),
        name=check("name", f.display_name, required=True),
        image=check("image", f.image, required=True),
        description=check("description", f.paragraph, f.MAX_DESCRIPTION, default=""),
        interface=check("interface", f.choice, f.INTERFACES, default="jupyterlab"),
        interfaces=check("interfaces", _interfaces, section == "site", default=DEFAULT_INTERFACES),
        gpu=check("gpu", f.choice, f.GPU_MODES, default="optional"),
        gpu_types=check("gpu_types", f.gpu_types, default=()),
        min_gpu_memory_gb=check("min_gpu_memory_gb", f.gpu_memory_gb, default=0),
        tags=check("tags", f.tags, default=()),
        roles=check("roles", f.roles, default=ROLES),
        binds=tuple(BindMount(*b) for b in check("binds", _binds, default=())),
        env=check("env", f.env, default=()),
        maintainer=check("maintainer", f.text, f.MAX_MAINTAINER, default=""),
        enabled=check("enabled", f.flag, default=True),
    )
    if section != "site":
        values.update(_ownership(data, section, owner, source, prefix, problems))
        values["maintainer"] = _owner_as_maintainer(values["maintainer"], values["owner"], prefix, source,
                                                    problems)
    if problems:
        raise InvalidEntry(tuple(problems))
    return CatalogEntry(**values, source=source)


def _interfaces(value: Any, field: str, site: bool) -> tuple[WebInterface, ...]:
    return web_apps.interfaces(value, field, site=site)


def _binds(value: Any, field: str) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(value, list):
        message = f"must be a list of bind specs 'src[:dst[:ro|rw]]', got {f.describe(value)}"
        raise f.FieldError(field, message)
    if len(value) > f.MAX_BINDS:
        raise f.FieldError(field, f"at most {f.MAX_BINDS} binds, got {len(value)}")
    return tuple(f.bind(spec, f"{field}[{i}]") for i, spec in enumerate(value))


def _owner_as_maintainer(given: str, owner: str | None, prefix: str, source: str,
                         problems: list[CatalogProblem]) -> str:
    """The maintainer of a user-defined entry is its owner: "" or the owner's name is accepted."""
    if given and owner is not None and given != owner:
        message = (f"is always the entry's owner ({owner}) for a user-defined entry, got {f.describe(given)};"
                   " leave it out (Carme sets it)")
        problems.append(CatalogProblem(source, prefix + "maintainer", message))
    return owner or ""


def _ownership(data: Mapping, section: str, owner: str | None, source: str, prefix: str,
               problems: list[CatalogProblem]) -> dict[str, Any]:
    """owner/section of a user-defined entry: recorded values must match where the file lives."""
    recorded_section = data.get("section", section)
    if recorded_section != section:
        message = f"says {f.describe(recorded_section)} but the entry is stored in the {section} section"
        problems.append(CatalogProblem(source, prefix + "section", message))
    recorded_owner = data.get("owner", owner)
    if owner is not None and recorded_owner != owner:
        message = f"says {f.describe(recorded_owner)} but the entry is stored in the section of {owner}"
        problems.append(CatalogProblem(source, prefix + "owner", message))
        return {"section": section, "owner": owner}
    if recorded_owner is None:
        problems.append(CatalogProblem(source, prefix + "owner", "is required for a user-defined entry"))
        return {"section": section, "owner": None}
    try:
        return {"section": section, "owner": f.owner_name(recorded_owner, prefix + "owner")}
    except f.FieldError as e:
        problems.append(CatalogProblem(source, e.field, e.message))
        return {"section": section, "owner": None}
