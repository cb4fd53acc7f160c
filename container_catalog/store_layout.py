"""Where user-defined entries live under the writable store directory (pure path arithmetic).

    <store>/shared/<owner>/<id>.yaml     the shared section: one directory per owner
    <store>/users/<owner>/<id>.yaml      one section per user

One entry per file, named after its id, so ids are unique per section and owner by construction:
two owners may both share a `torch` (users pick them as "alice/torch" and "bob/torch").
"""

from __future__ import annotations

from pathlib import Path

from . import fields as f

SHARED_DIR = "shared"
USERS_DIR = "users"
ENTRY_SUFFIX = ".yaml"


def section_dir(store: str | Path, section: str, owner: str | None = None) -> Path:
    """The directory of `owner`'s part of a section, "shared" or "user" (`owner`: a checked POSIX user name)."""
    if section == "shared":
        return Path(store) / SHARED_DIR / f.owner_name(owner)
    if section == "user":
        return Path(store) / USERS_DIR / f.owner_name(owner)
    raise ValueError(f"section must be 'user' or 'shared', got {section!r}")


def entry_file(store: str | Path, section: str, owner: str | None, entry_id: str) -> Path:
    """The file of entry `entry_id` (a checked slug, so it cannot leave its section's directory)."""
    return section_dir(store, section, owner) / (f.entry_id(entry_id) + ENTRY_SUFFIX)
