"""Who may use what: Carme's roles and the rules that filter the catalog by role (pure).

Roles are decided by `carme_core.roles` (from the hub's admin flag and groups): `user`, `power`,
`admin`. An entry lists the roles that may run it (`roles:`; all roles when omitted). Admins may
run every entry. Who may add user-defined entries is a hub scope (custom:carme-catalog:write).
"""

from __future__ import annotations

from typing import Iterable

from carme_core.roles import ADMIN, ROLES, check_role

__all__ = ["ROLES", "check_role", "role_may_use"]


def role_may_use(entry_roles: Iterable[str], role: str) -> bool:
    """True if `role` may run an entry that lists `entry_roles`: listed, or admin (admins see everything)."""
    check_role(role)
    return role == ADMIN or role in tuple(entry_roles)

