"""The catalog: every valid entry plus the problems found while loading, and the questions asked of it.

A Catalog is immutable; the watcher swaps in a new one when files change.

Users pick an entry by its choice id (:attr:`CatalogEntry.choice_id`), unique within what one
user can see:
  - a plain id ("pytorch") is a site entry, else that user's own entry, never a shared one; site
    ids are reserved (a user-defined entry reusing one is a load problem and is left out);
  - "<owner>/<id>" ("dave/torch") is the shared entry `id` of `owner`, and nothing else.
So no shared entry can ever answer for a site id, the site's default image or a remembered
plain id, even while a site file fails to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

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

    def get(self, choice_id: str, username: str | None = None) -> CatalogEntry | None:
        """The entry users pick as `choice_id`: for a plain id the site entry, else `username`'s own
        entry (none without a username), never a shared one; for "<owner>/<id>" only the shared entry
        `id` of `owner`. `catalog.visible_to(role, user).get(choice_id, user)` is the entry that user
        may start; disabled entries and roles are NOT filtered by get itself.
        """
        if not isinstance(choice_id, str):
            return None
        owner, sep, entry_id = choice_id.rpartition("/")
        if sep:
            return next((e for e in self.entries
                         if e.section == "shared" and e.owner == owner and e.id == entry_id), None)
        own = None
        for entry in self.entries:
            if entry.id != entry_id:
                continue
            if entry.section == "site":
                return entry
            if entry.section == "user" and username is not None and entry.owner == username:
                own = entry
        return own

    def ids(self, section: str | None = None) -> frozenset[str]:
        """The ids in `section` ("site", "shared", "user"), or in all sections."""
        return frozenset(e.id for e in self.entries if section is None or e.section == section)

    def names(self, section: str | None = None) -> frozenset[str]:
        """The display names in `section`, or in all sections (`names("site")`: what add refuses)."""
        return frozenset(e.name for e in self.entries if section is None or e.section == section)

    def visible_to(self, role: str, username: str | None = None, *, runnable_only: bool = False,
                   owner_may_share: Callable[[str], bool] | None = None) -> Catalog:
        """What `role` (and `username`) may pick: enabled site and shared entries the role may use,
        plus the user's own enabled entries. Admins may use every enabled entry. The result carries
        no problems (they name server files; show them to admins from the full catalog).
        With `runnable_only`, entries whose interface Carme cannot launch yet are left out too.
        `owner_may_share(owner)`: whether `owner` may still have user-defined entries (power users and
        admins); when given, the own and shared entries of an owner it refuses are left out (asked
        once per owner).
        """
        check_role(role)
        chosen = [e for e in self.entries
                  if e.section == "site" or e.section == "shared"
                  or (e.section == "user" and username is not None and e.owner == username)]
        if owner_may_share is not None:
            verdicts: dict[str, bool] = {}

            def trusted(entry: CatalogEntry) -> bool:
                if not entry.user_defined:
                    return True
                if entry.owner not in verdicts:
                    verdicts[entry.owner] = owner_may_share(entry.owner) is True
                return verdicts[entry.owner]

            chosen = [e for e in chosen if trusted(e)]
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
    parts = [entry.choice_id, entry.name, entry.description, entry.image, entry.maintainer, entry.owner or ""]
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
