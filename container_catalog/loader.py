"""Read the catalog from disk: the site directory and the user-defined store.

Site directory: every `*.yaml` / `*.yml` file (not hidden, not in subdirectories) holds one entry
(a mapping) or a list of entries under `images:` (then the only key). Files are read in name
order; an id already taken by an earlier file (or earlier in the same list) is a problem and the
later entry is left out. A bad file or entry is reported as a CatalogProblem and the rest load.

User-defined store: see `store_layout`. Every user-defined entry is screened at every load, and
left out with a problem naming its file when it
  - reuses a site id (site ids are reserved for the site catalog),
  - carries a site entry's name (ignoring case and whitespace: no impersonating the site's images),
  - names an image that today's rules refuse (`user_rules`: the site's schemes and prefixes, which
    may have been narrowed since the entry was added; `{username}` in a prefix is its owner).
Who may still share (an owner demoted since) is decided when the catalog is filtered for a
user: `Catalog.visible_to(..., owner_may_share=...)`.

A directory that cannot be listed keeps the entries of the previous catalog (if one is given):
doubt about the disk is not a reason to empty everyone's form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import fields as f
from .catalog import Catalog
from .image_reference import ImageReferenceError, UserEntryRules
from .schema import CatalogEntry, CatalogProblem, InvalidEntry, parse_entry
from .store_layout import SHARED_DIR, USERS_DIR

CATALOG_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1024 * 1024
INDEX_KEY = "images"


@dataclass(frozen=True)
class CatalogFile:
    """One file the catalog is read from, and the section it belongs to."""

    path: Path
    section: str = "site"
    owner: str | None = None  # the owner a user section's directory names


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {f.describe(key)} is given twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def load_catalog(directory: str | Path, user_directory: str | Path | None = None,
                 previous: Catalog | None = None, *, user_rules: UserEntryRules | None = None) -> Catalog:
    """The catalog from the site `directory` and (optionally) the user-defined store.

    `user_rules`: the site's rules for user-defined images today; entries they refuse are left out
    (a problem each). Without them the images of stored entries are not re-checked.
    """
    site_files, site_problems = list_site_files(directory)
    if _listing_failed(site_problems) and previous is not None:
        site_entries = [e for e in previous.entries if e.section == "site"]
        site_problems = _kept(site_problems, len(site_entries))
    else:
        site_entries, problems = load_files(site_files)
        site_problems += problems
    if user_directory is None:
        return Catalog(entries=tuple(site_entries), problems=tuple(site_problems))
    user_files, user_problems = list_user_files(user_directory)
    if _listing_failed(user_problems) and previous is not None:
        user_entries = [e for e in previous.entries if e.user_defined]
        user_problems = _kept(user_problems, len(user_entries))
    else:
        user_entries, problems = load_files(user_files, require_id_as_name=True)
        user_problems += problems
    kept_user_entries, problems = screen_user_entries(user_entries, site_entries, user_rules)
    entries = site_entries + kept_user_entries
    return Catalog(entries=tuple(entries), problems=tuple(site_problems + user_problems + problems))


def screen_user_entries(entries: list[CatalogEntry], site_entries: list[CatalogEntry],
                        rules: UserEntryRules | None) -> tuple[list[CatalogEntry], list[CatalogProblem]]:
    """The user-defined `entries` that keep to today's rules, and a problem for each of the others."""
    site_ids = {e.id: e.source for e in site_entries}
    site_names = {f.name_key(e.name): e.source for e in site_entries}
    kept, problems = [], []
    for entry in entries:
        problem = _site_conflict(entry, site_ids, site_names) or _refused_image(entry, rules)
        if problem is None:
            kept.append(entry)
        else:
            problems.append(problem)
    return kept, problems


def _site_conflict(entry: CatalogEntry, site_ids: dict[str, str],
                   site_names: dict[str, str]) -> CatalogProblem | None:
    if entry.id in site_ids:
        message = (f"id {entry.id!r} is already used by the site catalog ({site_ids[entry.id]}); "
                   "this user-defined entry is not offered: add it again under another id")
        return CatalogProblem(entry.source, "id", message)
    name_source = site_names.get(f.name_key(entry.name))
    if name_source is not None:
        message = (f"{f.describe(entry.name)} is the name of a site entry ({name_source}); this user-defined"
                   " entry is not offered: add it again under a name of its own")
        return CatalogProblem(entry.source, "name", message)
    return None


def _refused_image(entry: CatalogEntry, rules: UserEntryRules | None) -> CatalogProblem | None:
    if rules is None:
        return None
    try:
        rules.check(entry.image, entry.owner)
    except ImageReferenceError as e:
        message = f"{e}; today's rules for user-defined images refuse it, so this entry is not offered"
        return CatalogProblem(entry.source, "image", message)
    return None


def list_site_files(directory: str | Path) -> tuple[list[CatalogFile], list[CatalogProblem]]:
    """The catalog files of a site directory in name order, or the problem listing it."""
    names, problem = _list(Path(directory), missing_ok=False)
    return [CatalogFile(Path(directory) / n) for n in names if _is_catalog_file(Path(directory) / n)], problem


def list_user_files(store: str | Path) -> tuple[list[CatalogFile], list[CatalogProblem]]:
    """The entry files of the user-defined store (a store not created yet is empty, not a problem)."""
    store = Path(store)
    files: list[CatalogFile] = []
    problems: list[CatalogProblem] = []
    for section, directory in (("shared", store / SHARED_DIR), ("user", store / USERS_DIR)):
        owners, more = _list(directory, missing_ok=True)
        problems += more
        for owner in owners:
            owner_dir = directory / owner
            if section == "shared" and _is_catalog_file(owner_dir):
                message = (f"a shared entry is stored as {SHARED_DIR}/<owner>/<id>.yaml; move this file into"
                           " the directory of its owner (not loaded)")
                problems.append(CatalogProblem(str(owner_dir), "file", message))
                continue
            if not owner_dir.is_dir() or owner.startswith("."):
                continue
            if not f.OWNER_NAME.fullmatch(owner):
                message = "directory name is not a POSIX user name; ignored"
                problems.append(CatalogProblem(str(owner_dir), "owner", message))
                continue
            names, more = _list(owner_dir, missing_ok=True)
            problems += more
            files += [CatalogFile(owner_dir / n, section, owner) for n in names if _is_catalog_file(owner_dir / n)]
    return files, problems


def load_files(files: list[CatalogFile], *,
               require_id_as_name: bool = False) -> tuple[list[CatalogEntry], list[CatalogProblem]]:
    """Entries of `files` in order; a later id already taken in the same section and owner is a problem."""
    entries: list[CatalogEntry] = []
    problems: list[CatalogProblem] = []
    first_source: dict[tuple, str] = {}
    for file in files:
        found, file_problems = read_entries_file(file.path, section=file.section, owner=file.owner,
                                                 single_entry=require_id_as_name)
        problems += file_problems
        for entry in found:
            if require_id_as_name and file.path.stem != entry.id:
                message = (f"is {entry.id!r} but the file is named {file.path.name!r};"
                           " the store names files <id>.yaml")
                problems.append(CatalogProblem(entry.source, "id", message))
                continue
            key = (entry.section, entry.owner, entry.id)
            if key in first_source:
                message = f"id {entry.id!r} is already used by {first_source[key]}; this entry is left out"
                problems.append(CatalogProblem(entry.source, "id", message))
                continue
            first_source[key] = entry.source
            entries.append(entry)
    return entries, problems


def read_entries_file(path: str | Path, *, section: str = "site", owner: str | None = None,
                      single_entry: bool = False) -> tuple[list[CatalogEntry], list[CatalogProblem]]:
    """The valid entries of one file and the problems of the others (never raises for bad content)."""
    source = str(path)
    data, problem = _read_yaml(Path(path))
    if problem is not None:
        return [], [CatalogProblem(source, "file", problem)]
    if isinstance(data, dict) and INDEX_KEY in data and not single_entry:
        items, problems = _index_items(data, source)
    else:
        items, problems = [(data, "")], []
    entries = []
    for item, prefix in items:
        try:
            entries.append(parse_entry(item, source=source, section=section, owner=owner, prefix=prefix))
        except InvalidEntry as e:
            problems += e.problems
    return entries, problems


def _index_items(data: dict, source: str) -> tuple[list[tuple[Any, str]], list[CatalogProblem]]:
    problems = [
        CatalogProblem(source, f.field_name(key),
                       f"an index file holds only '{INDEX_KEY}:' (a list of entries)")
        for key in data if key != INDEX_KEY
    ]
    images = data[INDEX_KEY]
    if not isinstance(images, list):
        message = f"must be a list of entries, got {f.describe(images)}"
        problems.append(CatalogProblem(source, INDEX_KEY, message))
        return [], problems
    return [(item, f"{INDEX_KEY}[{i}].") for i, item in enumerate(images)], problems


def _read_yaml(path: Path) -> tuple[Any, str | None]:
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}"
    if len(raw) > MAX_FILE_BYTES:
        return None, f"is larger than {MAX_FILE_BYTES} bytes; split the catalog into smaller files"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (bad byte at offset {e.start})"
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        return None, _yaml_error_text(e)
    except RecursionError:
        return None, "YAML nesting is too deep"
    if data is None:
        return None, f"is empty: expected one entry (a mapping) or a list of entries under '{INDEX_KEY}:'"
    return data, None


def _yaml_error_text(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"is not valid YAML{where}: {what}"


def _list(directory: Path, *, missing_ok: bool) -> tuple[list[str], list[CatalogProblem]]:
    try:
        return sorted(os.listdir(directory)), []
    except FileNotFoundError:
        if missing_ok:
            return [], []
        return [], [CatalogProblem(str(directory), "directory", "does not exist")]
    except OSError as e:
        return [], [CatalogProblem(str(directory), "directory", f"cannot be listed: {e.strerror or e}")]


def _is_catalog_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix in CATALOG_SUFFIXES and path.is_file()


def _listing_failed(problems: list[CatalogProblem]) -> bool:
    return any(p.field == "directory" for p in problems)


def _kept(problems: list[CatalogProblem], count: int) -> list[CatalogProblem]:
    note = f"; keeping the {count} entries loaded before"
    return [CatalogProblem(p.path, p.field, p.message + (note if p.field == "directory" else ""))
            for p in problems]
