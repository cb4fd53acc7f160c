"""Carme's three roles and the one rule that decides a user's role.

Roles, lowest first: `user`, `power` (more GPUs, longer jobs, own images), `admin` (hub admin).
The ONE source of a user's role is the hub: its admin flag and the user's hub groups. The LDAP
authenticator puts every user into the hub group named after its role (and sets the admin flag
for admins); a site without LDAP adds users to a power group through the hub's API. Every part
of Carme asks :func:`role_from_hub` (in the hub) or :func:`role_of_model` (services, from the
hub's user model), with the power groups of :class:`CarmeRoles`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from traitlets import List, Unicode
from traitlets.config import Configurable

USER, POWER, ADMIN = ROLES = ("user", "power", "admin")  # lowest first


class CarmeRoles(Configurable):
    """How the hub's groups map onto Carme's roles (section `CarmeRoles:` of the settings file)."""

    power_groups = List(
        Unicode(),
        [POWER],
        config=True,
        help="Hub groups whose members are power users. The LDAP authenticator puts power users into "
        "the hub group 'power'; admins are the hub's admins (admin flag). Everyone else is a user.",
    )


def check_role(role: object) -> str:
    """Return `role` if it is one of ROLES; else ValueError naming it."""
    if role not in ROLES:
        shown = repr(role)[:40] if isinstance(role, str) else f"a value of type {type(role).__name__}"
        raise ValueError(f"role {shown} is not one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def role_from_hub(admin: bool, groups: Iterable[str], power_groups: Iterable[str]) -> str:
    """The role of a hub user: admin (the hub's admin flag), power (in a power group) or user."""
    if admin:
        return ADMIN
    if set(groups) & set(power_groups):
        return POWER
    return USER


def role_of_model(user: Mapping, power_groups: Iterable[str]) -> str:
    """The role from the hub's REST/OAuth user model ({"admin": bool, "groups": [names], ...})."""
    return role_from_hub(bool(user.get("admin")), user.get("groups") or (), power_groups)
