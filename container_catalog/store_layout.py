"""Where user-defined entries live under the writable store directory (pure path arithmetic).

    <store>/shared/<id>.yaml             the shared section (owner recorded in the file)
    <store>/users/<username>/<id>.yaml   one section per user

One entry per file, named after its id, so ids are unique per section by construction.
"""

from __future__ import annotations

from pathlib import Path

from . import fields as f

SHARED_DIR = "shared"
USERS_DIR = "users"
ENTRY_SUFFIX = ".yaml"


def section_dir(store: str | Path, section: str, owner: str | None = None) -> Path:
    """The directory of a section: "shared", or "user" of `owner` (a checked POSIX user name)."""
    if section == "shared":
        return Path(store) / SHARED_DIR
    if section == "user":
        return Path(store) / USERS_DIR / f.owner_name(owner)
    raise ValueError(f"section must be 'user' or 'shared', got {section!r}")


def entry_file(store: str | Path, section: str, owner: str | None, entry_id: str) -> Path:
    """The file of entry `entry_id` (a checked slug, so it cannot leave its section's directory)."""
    return section_dir(store, section, owner) / (f.entry_id(entry_id) + ENTRY_SUFFIX)
