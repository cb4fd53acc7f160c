"""What Carme wants in SLURM's accounting (pure): every user's and project's effective limits.

From the site's role defaults, the hub's users with their roles, the store's overrides and the
projects, `desired_state()` makes the `DesiredState` that `carme_quota.sacctmgr.plan` compares
with SLURM: one QOS per role (its priority), each user's association in the site's account
(their default), each project's account under it, and an association per project member, all
with the limits of `effective_limits`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from carme_core.roles import ROLES, USER

from .limits import Limits, ProjectTemplate, effective_limits
from .sacctmgr import AccountSpec, AssocSpec, DesiredState, check_name, role_qos


@dataclass(frozen=True)
class ProjectPolicy:
    """What the sync needs of a project (the store's `Project` has it too)."""

    name: str
    template: ProjectTemplate
    members: tuple[str, ...]


def unmanageable(name: str) -> bool:
    """True for a hub user name that is not a SLURM name (e.g. an e-mail address): no association."""
    try:
        check_name("user", name)
    except ValueError:
        return True
    return False


def desired_state(
    cluster: str,
    root_account: str,
    role_defaults: Mapping[str, Limits],
    users: Mapping[str, str],
    overrides: Mapping[str, Limits],
    projects: Iterable[ProjectPolicy],
) -> DesiredState:
    """`users`: {hub user: role}. A project member the hub does not know gets the user role's defaults.
    Names SLURM cannot take (see `unmanageable`) are left out: one such name must not stop everyone's sync."""
    users = {u: r for u, r in users.items() if not unmanageable(u)}
    projects = [ProjectPolicy(p.name, p.template, tuple(m for m in p.members if not unmanageable(m)))
                for p in projects]
    def limits(user: str, project: ProjectTemplate | None) -> Limits:
        role = users.get(user, USER)
        return effective_limits(role_defaults.get(role, Limits()), project, overrides.get(user))

    associations = {
        (user, root_account): AssocSpec(limits(user, None), role_qos(role), default_account=True)
        for user, role in users.items()
    }
    accounts = {}
    for project in projects:
        accounts[project.name] = AccountSpec.from_template(root_account, project.template, f"Carme project {project.name}")
        for member in project.members:
            associations[(member, project.name)] = AssocSpec(limits(member, project.template),
                                                             role_qos(users.get(member, USER)))
    qos = {role_qos(role): (role_defaults.get(role, Limits()).priority or 0) for role in ROLES}
    return DesiredState(cluster, root_account, qos, accounts, associations)
