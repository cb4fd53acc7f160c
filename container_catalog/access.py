"""Who may use what: Carme's roles and the rules that filter the catalog by role (pure).

Roles come from the authenticator (`carme_auth`, or `auth_state["role"]`): `user`, `power`,
`admin`. An entry lists the roles that may run it (`roles:`; all roles when omitted). Admins may
run every entry. Power users and admins may add user-defined entries; plain users may not.
"""

from __future__ import annotations

from typing import Iterable

ROLES = ("user", "power", "admin")
ADMIN_ROLE = "admin"
USER_ENTRY_ROLES = ("power", "admin")  # roles that may add entries to their own or the shared section


def check_role(role: str) -> str:
    """Return `role` if it is one of ROLES; else ValueError (a role is decided by the authenticator)."""
    if role not in ROLES:
        shown = repr(role)[:40] if isinstance(role, str) else f"a value of type {type(role).__name__}"
        raise ValueError(f"role {shown} is not one of {', '.join(ROLES)}")
    return role


def role_may_use(entry_roles: Iterable[str], role: str) -> bool:
    """True if `role` may run an entry that lists `entry_roles`: listed, or admin (admins see everything)."""
    check_role(role)
    return role == ADMIN_ROLE or role in tuple(entry_roles)


def may_add_user_entries(role: str) -> bool:
    """True if `role` may add user-defined entries (own or shared section): power users and admins."""
    return check_role(role) in USER_ENTRY_ROLES
