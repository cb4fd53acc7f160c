"""CarmeLDAPAuthenticator: JupyterHub login against an LDAP directory, with Carme roles.

Thin: JupyterHub's hooks. The settings are in `settings`; the work is done by `names` (user name
rules), `client` (connections, TLS), `directory` (entries, groups, disabled accounts), `roles`
(groups -> role) and `throttle` (brute force). One login:

    form -> normalized, validated name (else refused; the directory is not asked)
         -> cool-down? (else refused with the remaining time; not asked either)
         -> empty password? (refused; never sent: that would be an unauthenticated bind)
         -> directory: password, uid/gid/home, groups, disabled?  (in a worker thread)
         -> role from groups (none: refused with a message on the form)
         -> {name, admin, groups: [role], auth_state: {username, uid, gid, home, groups, role}}

The spawner runs the job as auth_state's uid with auth_state's home (carme_spawner.accounts).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import default

from carme_core.roles import ADMIN

from .address import request_address
from .client import DirectoryUnavailable
from .directory import DirectoryDataError, DirectoryUser, UserDirectory
from .names import POSIX_USERNAME_PATTERN, UsernameError, checked_username, normalize_username
from .roles import role_for
from .settings import LDAPSettings
from carme_core.throttle import LoginThrottle
from .throttle_api import PATH as THROTTLE_API_PATH
from .throttle_api import LoginThrottleHandler

UNAVAILABLE = "The user directory cannot be reached right now. Please try again in a few minutes."
DISABLED = "Your account is disabled in the user directory. Please contact your administrators."


class CarmeLDAPAuthenticator(Authenticator, LDAPSettings):
    # ---- JupyterHub defaults for this authenticator ------------------------------------------------
    @default("username_pattern")
    def _username_pattern_default(self):
        return POSIX_USERNAME_PATTERN

    @default("username_regex")
    def _username_regex_default(self):  # JupyterHub compiles only a configured pattern, not a default
        return re.compile(self.username_pattern) if self.username_pattern else None

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True  # uid, gid, home and role for the spawner

    @default("manage_groups")
    def _manage_groups_default(self):
        return True  # the role is the user's group

    @default("refresh_pre_spawn")
    def _refresh_pre_spawn_default(self):
        return True  # a spawn uses the directory's current uid/home/role

    @default("any_allow_config")
    def _any_allow_config_default(self):
        return True  # role_groups is the allow list

    def check_allow_config(self):
        super().check_allow_config()
        self.check_ldap_settings()

    # ---- the parts ---------------------------------------------------------------------------------
    @cached_property
    def throttle(self) -> LoginThrottle:
        return self.make_throttle()

    @cached_property
    def directory(self) -> UserDirectory:
        return self.make_directory()

    @cached_property
    def _executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=4, thread_name_prefix="carme-ldap")

    def _checked_name(self, raw) -> str:
        return checked_username(raw, self.username_pattern or POSIX_USERNAME_PATTERN)

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def get_handlers(self, app):
        return super().get_handlers(app) + [(THROTTLE_API_PATH, LoginThrottleHandler)]

    # ---- JupyterHub's hooks --------------------------------------------------------------------------
    def normalize_username(self, username):
        username = normalize_username(username)
        return self.username_map.get(username, username)

    async def authenticate(self, handler, data):
        address = request_address(handler.request if handler is not None else None, self.login_throttle_trusted_hops,
                                  tuple(self.login_throttle_trusted_proxies), self.login_throttle_trust_x_real_ip)
        raw, password = (data or {}).get("username", ""), (data or {}).get("password", "")
        try:
            username = self._checked_name(raw)
        except UsernameError as e:
            self.log.warning("Login refused before asking the directory: %s (from %s)", e, address)
            self._count_failure(None, address)
            return None
        lock = self.throttle.lockout(username, address)
        if lock:
            now = self.throttle.clock()
            self.log.warning("Login of %s from %s refused: %s", username, address, lock.describe(now))
            raise web.HTTPError(
                429, f"Too many failed logins. Please try again in {lock.remaining(now)} seconds."
            )
        if not password:
            self.log.warning(
                "Login of %s from %s refused: empty password (never sent to the directory)", username, address
            )
            self._count_failure(username, address)
            return None
        try:
            user = await self._in_thread(self.directory.authenticate, username, password)
        except DirectoryUnavailable as e:
            self.log.error("LDAP login of %s failed closed: %s", username, e)
            raise web.HTTPError(503, UNAVAILABLE) from None
        except DirectoryDataError as e:
            self.log.error("LDAP login of %s refused: %s", username, e)
            raise web.HTTPError(
                403, "Your directory entry is incomplete. Please contact your administrators."
            ) from None
        if user is None:
            self.log.warning(
                "LDAP login of %s from %s failed: unknown user or wrong password", username, address
            )
            self._count_failure(username, address)
            return None
        self.throttle.record_success(username, address)
        if user.disabled:
            self.log.warning("LDAP login of %s refused: %s", username, user.disabled)
            raise web.HTTPError(403, DISABLED)
        model = self._auth_model(user)
        if model is None:
            self.log.warning(
                "LDAP login of %s refused: in none of the role groups %s", username, sorted(self.role_groups)
            )
            groups = ", ".join(sorted(self.role_groups))
            raise web.HTTPError(
                403,
                f"{username} is not in any group that gives access to Carme ({groups}). "
                "Please ask your administrators for access.",
            )
        self.log.info(
            "LDAP login of %s: role %s, uid %d, groups %s",
            username,
            model["auth_state"]["role"],
            user.uid,
            list(user.groups),
        )
        return model

    def _count_failure(self, username: str | None, address: str | None) -> None:
        for lock in self.throttle.record_failure(username, address):
            self.log.warning("Login throttle: %s", lock.describe(self.throttle.clock()))

    def _auth_model(self, user: DirectoryUser) -> dict | None:
        """JupyterHub's auth model for a directory user; None when no group gives a role."""
        role = role_for(user.groups, self.role_groups)
        if role is None:
            return None
        return {
            "name": user.username,
            "admin": role == ADMIN or user.username in self.admin_users,
            "groups": [role],
            "auth_state": {
                "username": user.username,
                "uid": user.uid,
                "gid": user.gid,
                "home": user.home,
                "groups": list(user.groups),
                "role": role,
            },
        }

    def check_allowed(self, username, authentication=None):
        state = (authentication or {}).get("auth_state") or {}
        return bool(state.get("role")) or super().check_allowed(username, authentication)

    async def refresh_user(self, user, handler=None):
        """Re-read the directory (at most every `auth_refresh_age` s, and before each spawn): a new role,
        uid or home applies now; a user who lost every role group or was disabled must log in again
        (and is refused). Without a service account (direct bind) changes apply at the next login, and a
        hub user who never logged in through the directory is sent to log in. While the directory
        cannot be reached, the last known state is kept."""
        state = await user.get_auth_state() if hasattr(user, "get_auth_state") else None
        if not self.bind_dn:
            # no service account to look the user up with: only a user who logged in through the
            # directory (and so has its auth_state) may go on; a hub user made through the REST
            # API (e.g. "root") has none and must log in, which the directory refuses
            if not (state or {}).get("uid"):
                self.log.warning("LDAP refresh of %s: no directory login on record; a login is needed", user.name)
                return False
            return True
        try:  # the directory's name for the user (the hub name may differ: username_map)
            name = self._checked_name((state or {}).get("username") or user.name)
        except UsernameError as e:
            self.log.error("LDAP refresh of %s: %s", user.name, e)
            return False
        try:
            found = await self._in_thread(self.directory.lookup, name)
        except DirectoryUnavailable as e:
            self.log.warning("LDAP refresh of %s skipped (last known state kept): %s", user.name, e)
            return True
        except DirectoryDataError as e:
            self.log.error("LDAP refresh of %s: %s", user.name, e)
            return False
        if found is None or found.disabled:
            self.log.warning(
                "LDAP refresh of %s: %s; a new login is needed",
                user.name,
                found and found.disabled or "not in the directory",
            )
            return False
        model = self._auth_model(found)
        if model is None:
            self.log.warning(
                "LDAP refresh of %s: in none of the role groups any more; a new login is needed", user.name
            )
            return False
        return model
