"""User-defined entries: add to a user's own or the shared section, disable or re-enable them.

Storage (see `store_layout`): one YAML file per entry, `<store>/users/<owner>/<id>.yaml` or
`<store>/shared/<owner>/<id>.yaml`, holding the normalized entry with its `owner` and `section`. Files
are written to a hidden temporary file in the same directory, fsynced, set to mode 0644, then
moved into place: a new entry with `os.link` (atomic and never overwrites, so two concurrent adds
of one id cannot both win), a changed entry (disable/enable) with `os.replace`. Readers therefore
see the old file or the new one, never half of one. The catalog loader and watcher read the store.

Who may call these (the hub scope custom:carme-catalog:write: power users and admins) is decided by the
caller; these functions enforce what is stored: the schema of user-defined entries (no roles,
binds or env; the maintainer is the owner), the stricter image-reference rule (allowed schemes
and prefixes from the caller, `{username}` in a prefix = the owner, no `..`, no shell
metacharacters), ids unique per section and owner and not taken by the site catalog, and names
that are not a site entry's (ignoring case and whitespace). The loader checks the same again
at every load (`UserEntryRules`), so a rule narrowed later applies to stored entries too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from carme_core.files import write_atomically

from . import fields as f
from .image_reference import ImageReferenceError, check_user_image_reference
from .loader import CATALOG_SUFFIXES, read_entries_file
from .schema import CatalogEntry, CatalogProblem, InvalidEntry, parse_entry
from .store_layout import entry_file, section_dir

FILE_MODE = 0o644
DIR_MODE = 0o755
MAX_ENTRIES_PER_SECTION = 200
REQUEST = "<new user entry>"  # the source named in problems of a request


class UserEntryError(ValueError):
    """The request is invalid (HTTP 400): .field and .message name the first problem, .problems all."""

    def __init__(self, field: str, message: str, problems: tuple[CatalogProblem, ...] = ()):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.problems = problems or (CatalogProblem(REQUEST, field, message),)


class UserEntryForbidden(UserEntryError):
    """The caller may not change this entry (HTTP 403)."""


class UserEntryNotFound(UserEntryError):
    """No such entry in that section (HTTP 404)."""


class UserEntryConflict(UserEntryError):
    """The id is taken in that section or by the site catalog, or the name is a site entry's (HTTP 409)."""


def add_user_entry(
    store: str | Path,
    owner: str,
    data: Mapping[str, Any],
    *,
    shared: bool = False,
    allowed_schemes: Iterable[str],
    allowed_prefixes: Iterable[str],
    reserved_ids: Iterable[str] = (),
    reserved_names: Iterable[str] = (),
    max_entries: int = MAX_ENTRIES_PER_SECTION,
) -> CatalogEntry:
    """Validate `data` and store it as `owner`'s entry (own section, or the shared one); return it.

    `allowed_schemes` ⊆ {"file", "docker", "oras", "library"} ("file" = absolute .sif path) and
    `allowed_prefixes` (e.g. "/opt/carme/images/", "/home/{username}/images/", "docker://nvcr.io/";
    `{username}` is `owner`) come from the site's settings; `reserved_ids` and `reserved_names` are
    the site catalog's (`catalog.ids("site")`, `catalog.names("site")`). The maintainer is `owner`.
    Users pick a shared entry as "<owner>/<id>" (`entry.choice_id`).
    """
    section = "shared" if shared else "user"
    owner = _owner(owner)
    if not isinstance(data, Mapping):
        message = f"must be a mapping of field names to values, got {f.describe(data)}"
        raise UserEntryError("entry", message)
    for key in ("owner", "section"):
        if key in data:
            raise UserEntryError(key, "is set by Carme (who you are, where the entry goes); leave it out")
    entry = _parse_with_user_image_rules(data, section, owner, allowed_schemes, allowed_prefixes)
    if entry.id in set(reserved_ids):
        raise UserEntryConflict("id", f"{entry.id!r} is already used by the site catalog; choose another id")
    if f.name_key(entry.name) in {f.name_key(name) for name in reserved_names}:
        message = (f"{entry.name!r} is the name of a site catalog entry (ignoring case and spaces);"
                   " choose a name of your own")
        raise UserEntryConflict("name", message)

    directory = section_dir(store, section, owner)
    _make_dirs(directory)
    where = _where(section, owner)
    existing = [p for p in _entry_files(directory)]
    if any(p.stem == entry.id for p in existing):
        raise UserEntryConflict("id", f"{entry.id!r} already exists in {where} (re-enable that one instead)")
    if len(existing) >= max_entries:
        raise UserEntryError("id", f"{where} already holds {len(existing)} entries (at most {max_entries})")
    path = entry_file(store, section, owner, entry.id)
    try:
        _write_atomically(path, entry, replace=False)
    except FileExistsError:
        raise UserEntryConflict("id", f"{entry.id!r} already exists in {where}") from None
    return dataclasses.replace(entry, source=str(path))


def disable_user_entry(store: str | Path, owner: str, entry_id: str, *, shared: bool = False,
                       caller: str | None = None, admin: bool = False) -> CatalogEntry:
    """Disable an entry (kept on disk, so its id stays taken; hidden from forms); return it as stored.

    `owner` is the entry's owner: whose section, or the owner part of a shared choice id
    "<owner>/<id>". `caller`, when given, is who asks: only `owner` or an admin (`admin=True`)
    may change the entry (UserEntryForbidden otherwise); without it the caller has decided.
    """
    return _set_enabled(store, owner, entry_id, False, shared=shared, caller=caller, admin=admin)


def enable_user_entry(store: str | Path, owner: str, entry_id: str, *, shared: bool = False,
                      caller: str | None = None, admin: bool = False, allowed_schemes: Iterable[str],
                      allowed_prefixes: Iterable[str]) -> CatalogEntry:
    """Enable a disabled entry again (`owner`, `caller`, `admin` as for disable_user_entry); its image
    must pass today's rules, `{username}` being the owner (the site may have narrowed them)."""
    def check(entry: CatalogEntry) -> None:
        try:
            check_user_image_reference(entry.image, allowed_schemes, allowed_prefixes, owner=entry.owner)
        except ImageReferenceError as e:
            raise UserEntryError("image", str(e)) from None

    return _set_enabled(store, owner, entry_id, True, shared=shared, caller=caller, admin=admin, check=check)


def _set_enabled(store: str | Path, owner: str, entry_id: str, enabled: bool, *, shared: bool,
                 caller: str | None, admin: bool,
                 check: Callable[[CatalogEntry], None] | None = None) -> CatalogEntry:
    section = "shared" if shared else "user"
    owner = _owner(owner)
    if caller is not None and _owner(caller) != owner and not admin:
        message = f"entry {entry_id!r:.70} belongs to {owner}; only they or an admin may change it"
        raise UserEntryForbidden("owner", message)
    try:
        path = entry_file(store, section, owner, entry_id)
    except f.FieldError as e:
        raise UserEntryNotFound("id", e.message) from None
    if not path.is_file():
        raise UserEntryNotFound("id", f"no entry {entry_id!r} in {_where(section, owner)}")
    entries, problems = read_entries_file(path, section=section, owner=owner, single_entry=True)
    if problems or not entries:
        first = problems[0] if problems else CatalogProblem(str(path), "file", "holds no entry")
        raise UserEntryError(first.field, f"the stored entry is invalid: {first.message}", tuple(problems))
    entry = entries[0]
    if check is not None:
        check(entry)
    if entry.enabled != enabled:
        entry = dataclasses.replace(entry, enabled=enabled)
        _write_atomically(path, entry, replace=True)
    return entry


def _parse_with_user_image_rules(data: Mapping[str, Any], section: str, owner: str,
                                 allowed_schemes: Iterable[str],
                                 allowed_prefixes: Iterable[str]) -> CatalogEntry:
    """parse_entry, with the image judged by the stricter user rule (its message replaces the site rule's)."""
    image_problem = None
    if data.get("image") is not None:
        try:
            check_user_image_reference(data["image"], allowed_schemes, allowed_prefixes, owner=owner)
        except ImageReferenceError as e:
            image_problem = CatalogProblem(REQUEST, "image", str(e))
    try:
        entry = parse_entry(dict(data), source=REQUEST, section=section, owner=owner)
        problems = []
    except InvalidEntry as e:
        entry, problems = None, list(e.problems)
    if image_problem is not None:
        problems = [p for p in problems if p.field != "image"]
        problems.insert(0, image_problem)
    if problems:
        raise UserEntryError(problems[0].field, problems[0].message, tuple(problems))
    return entry


def _where(section: str, owner: str) -> str:
    return f"the shared section of {owner}" if section == "shared" else f"the section of {owner}"


def _owner(owner: Any) -> str:
    try:
        return f.owner_name(owner)
    except f.FieldError as e:
        raise UserEntryError(e.field, e.message) from None


def _entry_files(directory: Path) -> list[Path]:
    return [directory / n for n in os.listdir(directory)
            if not n.startswith(".") and Path(n).suffix in CATALOG_SUFFIXES]


def _make_dirs(directory: Path) -> None:
    missing = []
    parent = directory
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
            os.chmod(path, DIR_MODE)  # whatever the umask: the hub and services read the store
        except FileExistsError:
            pass


def _write_atomically(path: Path, entry: CatalogEntry, *, replace: bool) -> None:
    text = yaml.safe_dump(entry.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=False)
    write_atomically(path, text, FILE_MODE, replace=replace)  # not replace: fails if the id exists
