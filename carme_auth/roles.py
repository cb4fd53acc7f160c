"""Directory groups -> one Carme role (pure).

Carme knows three roles, from least to most: user, power (more GPUs, longer jobs, more images),
admin (hub admin). A site maps its directory group names to them; a member of several mapped
groups gets the highest role. No mapped group: no role, no login.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from carme_core.roles import ADMIN, POWER, ROLES, USER

DEFAULT_ROLE_GROUPS = {"carme-admins": ADMIN, "carme-power": POWER, "carme-users": USER}


def check_role_groups(mapping, field: str = "CarmeLDAPAuthenticator.role_groups") -> dict[str, str]:
    """The mapping when it maps non-empty group names to known roles; ValueError naming the bad entry."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{field} must map directory group names to roles ({', '.join(ROLES)})")
    for group, role in mapping.items():
        if not isinstance(group, str) or not group.strip():
            raise ValueError(f"{field}: group names must be non-empty strings, got {group!r}")
        if role not in ROLES:
            raise ValueError(f"{field}[{group!r}]: role must be one of {', '.join(ROLES)}, not {role!r}")
    return dict(mapping)


def role_for(groups: Iterable[str], mapping: Mapping[str, str]) -> str | None:
    """The highest role any of `groups` maps to (group names compare case-insensitively), else None."""
    by_name = {group.lower(): role for group, role in mapping.items()}
    roles = {by_name[g.lower()] for g in groups if g.lower() in by_name}
    return max(roles, key=ROLES.index) if roles else None
