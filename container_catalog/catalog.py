"""The catalog: every valid entry plus the problems found while loading, and the questions asked of it.

A Catalog is immutable; the watcher swaps in a new one when files change. Ids are unique within
what one user can see: site ids are reserved for everyone (a user-defined entry reusing one is a
load problem and is left out); a user's own entry takes precedence over a shared entry with the
same id, in that user's view only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .access import check_role
from .schema import SECTIONS, CatalogEntry, CatalogProblem


def _sort_key(entry: CatalogEntry) -> tuple:
    return (entry.name.casefold(), entry.name, SECTIONS.index(entry.section), entry.owner or "", entry.id)


@dataclass(frozen=True)
class Catalog:
    """Valid entries (sorted by name) and the problems of the files they came from."""

    entries: tuple[CatalogEntry, ...] = ()
    problems: tuple[CatalogProblem, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=_sort_key)))
        object.__setattr__(self, "problems", tuple(self.problems))

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str, username: str | None = None) -> CatalogEntry | None:
        """The entry called `entry_id`: a site entry, else a user entry (of `username` when given), else
        a shared one: the precedence of visible_to, so `catalog.visible_to(role, user).get(id)` is the
        entry that user may start. Disabled entries and roles are NOT filtered by get itself.
        """
        own = shared = None
        for entry in self.entries:
            if entry.id != entry_id:
                continue
            if entry.section == "site":
                return entry
            if entry.section == "user" and (username is None or entry.owner == username):
                own = entry
            elif entry.section == "shared":
                shared = entry
        return own or shared

    def ids(self, section: str | None = None) -> frozenset[str]:
        """The ids in `section` ("site", "shared", "user"), or in all sections."""
        return frozenset(e.id for e in self.entries if section is None or e.section == section)

    def visible_to(self, role: str, username: str | None = None, *, runnable_only: bool = False) -> Catalog:
        """What `role` (and `username`) may pick: enabled site and shared entries the role may use,
        plus the user's own enabled entries. Admins may use every enabled entry. The result carries
        no problems (they name server files; show them to admins from the full catalog).
        With `runnable_only`, entries whose interface Carme cannot launch yet are left out too.
        """
        check_role(role)
        own = [e for e in self.entries
               if e.section == "user" and username is not None and e.owner == username]
        own_ids = {e.id for e in own}
        chosen = [e for e in self.entries if e.section == "site"]
        chosen += [e for e in self.entries if e.section == "shared" and e.id not in own_ids]
        chosen += own
        usable = (e for e in chosen
                  if e.enabled and e.allowed_for(role) and (e.runnable or not runnable_only))
        return Catalog(entries=tuple(usable))

    def search(self, text: str = "", tag: str | None = None) -> Catalog:
        """Entries whose id, name, description, image, maintainer, owner or tags contain every word
        of `text` (case-insensitive), and that carry `tag`: "name", "value", "name:value" or "name=value".
        """
        words = text.casefold().split()
        found = (e for e in self.entries if all(w in _haystack(e) for w in words) and _has_tag(e, tag))
        return Catalog(entries=tuple(found), problems=self.problems)


def _haystack(entry: CatalogEntry) -> str:
    parts = [entry.id, entry.name, entry.description, entry.image, entry.maintainer, entry.owner or ""]
    parts += [f"{key} {value}" for key, value in entry.tags]
    return " ".join(parts).casefold()


def _has_tag(entry: CatalogEntry, tag: str | None) -> bool:
    if tag is None or not tag.strip():
        return True
    tag = tag.strip().casefold()
    sep = "=" if "=" in tag else ":"
    key, has_value, value = tag.partition(sep)
    tags = [(k.casefold(), v.casefold()) for k, v in entry.tags]
    if has_value:
        return (key.strip(), value.strip()) in tags
    return any(tag in (k, v) for k, v in tags)
