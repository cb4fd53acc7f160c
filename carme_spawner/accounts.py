"""Who a job runs as: the POSIX account behind a hub user, checked against the authenticator.

The authenticator's `auth_state` (LDAP: uid, gid, home) is the source of truth for the user's
identity (the role is the hub's to decide: `carme_core.roles`); the hub host's account database (the same directory through sssd/nslcd on a
real cluster) must agree with it, because sbatch runs as that account. A disagreement refuses
the spawn instead of starting a job as the wrong user.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass

from carme_core.roles import check_role

POSIX_USERNAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
HOME_PATH = re.compile(r"/[A-Za-z0-9_.@+/-]{0,255}")
#: accounts no job may run as: root and the system and daemon accounts of a Debian/RHEL host
DENIED_USERS = (
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "nfsnobody", "systemd-network", "systemd-resolve",
    "systemd-timesync", "messagebus", "sshd", "munge", "slurm", "openldap", "postgres", "mysql", "polkitd",
    "adm", "halt", "operator", "shutdown", "ftp",
)


class AccountError(ValueError):
    """The user cannot run jobs: no valid account, or the sources disagree."""


@dataclass(frozen=True)
class JobAccount:
    username: str
    uid: int
    gid: int
    home: str
    role: str  # user | power | admin


def resolve_account(hub_username: str, auth_state: dict | None, role: str, lookup=pwd.getpwnam, *,
                    min_uid: int = 1000, denied_users: tuple[str, ...] = DENIED_USERS) -> JobAccount:
    """The account a job of `hub_username` (whose role the hub decided) runs as; AccountError says why
    there is none. Never root, a system account (uid below `min_uid`) or a name in `denied_users`."""
    state = auth_state or {}
    username = str(state.get("username") or hub_username)
    if not POSIX_USERNAME.fullmatch(username):
        raise AccountError(f"user name {username!r:.40} is not a valid POSIX user name")
    if username in denied_users or hub_username in denied_users:
        raise AccountError(f"{username} is a system account: Carme runs no job as it")
    try:
        local = lookup(username)
    except KeyError:
        raise AccountError(f"user {username} has no POSIX account on the hub host") from None
    uid, gid, home = local.pw_uid, local.pw_gid, local.pw_dir
    if uid < min_uid:
        raise AccountError(f"{username} has uid {uid}, below the lowest uid jobs may run as ({min_uid}): "
                           "Carme runs no job as a system account")
    if "uid" in state:
        if _int(state["uid"], "uid") != local.pw_uid:
            raise AccountError(
                f"the directory says {username} has uid {state['uid']}, but this host's account has uid "
                f"{local.pw_uid}; ask your admins to fix the account mapping"
            )
        gid = _int(state.get("gid", gid), "gid")
        home = str(state.get("home") or home)
    if not HOME_PATH.fullmatch(home) or ".." in home.split("/"):
        raise AccountError(f"home directory {home!r:.60} of {username} is not a plain absolute path")
    try:
        check_role(role)
    except ValueError as e:
        raise AccountError(f"{username}: {e}") from None
    return JobAccount(username=username, uid=uid, gid=gid, home=home, role=role)


def _int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"[0-9]{1,10}", str(value)):
        raise AccountError(f"auth state field {field} must be a number, got {value!r:.20}")
    return int(value)
