"""Read the catalog from disk: the site directory and the user-defined store.

Site directory: every `*.yaml` / `*.yml` file (not hidden, not in subdirectories) holds one entry
(a mapping) or a list of entries under `images:` (then the only key). Files are read in name
order; an id already taken by an earlier file (or earlier in the same list) is a problem and the
later entry is left out. A bad file or entry is reported as a CatalogProblem and the rest load.

User-defined store: see `store_layout`. Site ids are reserved: a shared or user entry reusing one
is a problem and is left out.

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
                 previous: Catalog | None = None) -> Catalog:
    """The catalog from the site `directory` and (optionally) the user-defined store."""
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
    site_sources = {e.id: e.source for e in site_entries}
    kept_user_entries = []
    for entry in user_entries:
        if entry.id in site_sources:
            message = (f"id {entry.id!r} is already used by the site catalog ({site_sources[entry.id]}); "
                       "this user-defined entry is not offered: add it again under another id")
            user_problems.append(CatalogProblem(entry.source, "id", message))
        else:
            kept_user_entries.append(entry)
    entries, problems = site_entries + kept_user_entries, site_problems + user_problems
    return Catalog(entries=tuple(entries), problems=tuple(problems))


def list_site_files(directory: str | Path) -> tuple[list[CatalogFile], list[CatalogProblem]]:
    """The catalog files of a site directory in name order, or the problem listing it."""
    names, problem = _list(Path(directory), missing_ok=False)
    return [CatalogFile(Path(directory) / n) for n in names if _is_catalog_file(Path(directory) / n)], problem


def list_user_files(store: str | Path) -> tuple[list[CatalogFile], list[CatalogProblem]]:
    """The entry files of the user-defined store (a store not created yet is empty, not a problem)."""
    store = Path(store)
    names, problems = _list(store / SHARED_DIR, missing_ok=True)
    shared = store / SHARED_DIR
    files = [CatalogFile(shared / n, "shared") for n in names if _is_catalog_file(shared / n)]
    owners, more = _list(store / USERS_DIR, missing_ok=True)
    problems += more
    for owner in owners:
        owner_dir = store / USERS_DIR / owner
        if not owner_dir.is_dir() or owner.startswith("."):
            continue
        if not f.OWNER_NAME.fullmatch(owner):
            message = "directory name is not a POSIX user name; ignored"
            problems.append(CatalogProblem(str(owner_dir), "owner", message))
            continue
        names, more = _list(owner_dir, missing_ok=True)
        problems += more
        files += [CatalogFile(owner_dir / n, "user", owner) for n in names if _is_catalog_file(owner_dir / n)]
    return files, problems


def load_files(files: list[CatalogFile], *,
               require_id_as_name: bool = False) -> tuple[list[CatalogEntry], list[CatalogProblem]]:
    """Entries of `files` in order; a later id already taken in the same section (and owner) is a problem."""
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
            key = (entry.section, entry.owner if entry.section == "user" else None, entry.id)
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
