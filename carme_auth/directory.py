"""Who a user is in the directory: the entry, the password check, uid/gid/home, groups, and
whether the account is disabled. Blocking (runs in worker threads, like `client`).

Two ways to check a password:
- search-then-bind (`bind_dn_template` empty): the service account searches `user_search_base`
  with `user_search_filter`; exactly one entry must match; then a bind as that entry's DN.
- direct bind (`bind_dn_template`, e.g. `uid={username},ou=people,dc=example,dc=org`): a bind as
  the templated DN, then the user's own entry and groups are read with the user's connection.
Every value put into a filter is escaped (RFC 4515) and every name put into a DN is escaped as an
RDN value, so a user name can neither widen a search nor name someone else's entry.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass

import ldap3

from .client import Entry, InvalidCredentials, LDAPClient, unbind_quietly
from .names import ldap_dn, ldap_filter, shorten

log = logging.getLogger("carme_auth")


class DirectoryDataError(Exception):
    """The user's entry lacks an attribute Carme needs, or has a bad value (the message names it)."""


@dataclass(frozen=True)
class DirectorySettings:
    user_search_base: str = ""
    user_search_filter: str = "(&(objectClass=posixAccount)(uid={username}))"
    username_attribute: str = "uid"
    bind_dn_template: str = ""  # set: direct bind; empty: search-then-bind
    group_search_base: str = ""
    group_search_filter: str = "(&(objectClass=groupOfNames)(member={user_dn}))"
    group_name_attribute: str = "cn"
    uid_attribute: str = "uidNumber"
    gid_attribute: str = "gidNumber"
    home_attribute: str = "homeDirectory"
    expiry_attribute: str = "shadowExpire"  # days since 1970-01-01; "" turns the check off
    disabled_attribute: str = ""  # e.g. nsAccountLock; "" turns the check off
    disabled_values: tuple[str, ...] = ("true", "yes", "1", "disabled")

    @property
    def direct_bind(self) -> bool:
        return bool(self.bind_dn_template)

    def user_attributes(self) -> list[str]:
        names = [self.username_attribute, self.uid_attribute, self.gid_attribute, self.home_attribute]
        return [a for a in names + [self.expiry_attribute, self.disabled_attribute] if a]


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    username: str
    uid: int
    gid: int
    home: str
    groups: tuple[str, ...]  # names of the directory groups the user is a member of
    disabled: str | None  # why the account is disabled, None when it is not


def disabled_reason(attrs: dict[str, list[str]], settings: DirectorySettings, today: int) -> str | None:
    """Why the directory says this account may not log in (None: it may)."""
    if settings.expiry_attribute:
        for value in attrs.get(settings.expiry_attribute.lower(), [])[:1]:
            try:
                expires = int(value)
            except ValueError:
                return f"{settings.expiry_attribute} is not a number of days ({shorten(value)})"
            if expires >= 0 and today >= expires:
                day = time.strftime("%Y-%m-%d", time.gmtime(expires * 86400))
                return f"the account expired on {day} ({settings.expiry_attribute})"
    if settings.disabled_attribute:
        disabled = {v.lower() for v in settings.disabled_values}
        for value in attrs.get(settings.disabled_attribute.lower(), []):
            if value.strip().lower() in disabled:
                return f"the account is disabled ({settings.disabled_attribute}={value})"
    return None


def user_from_entry(
    entry: Entry, username: str, groups: tuple[str, ...], settings: DirectorySettings, today: int
) -> DirectoryUser:
    """The user behind `entry`; DirectoryDataError names the attribute that is missing or wrong."""
    dn, attrs = entry

    def one(attribute: str) -> str:
        values = attrs.get(attribute.lower()) or []
        if len(values) != 1 or not values[0].strip():
            raise DirectoryDataError(
                f"{dn}: attribute {attribute} must have exactly one value, has {len(values)}"
            )
        return values[0].strip()

    def number(attribute: str) -> int:
        value = one(attribute)
        if not value.isdigit():
            raise DirectoryDataError(
                f"{dn}: attribute {attribute} must be a non-negative integer, not {shorten(value)}"
            )
        return int(value)

    names = [v.lower() for v in attrs.get(settings.username_attribute.lower(), [])]
    if username not in names:
        raise DirectoryDataError(f"{dn}: attribute {settings.username_attribute} does not hold {username!r}")
    home = one(settings.home_attribute)
    if not posixpath.isabs(home) or ".." in home.split("/"):
        raise DirectoryDataError(
            f"{dn}: attribute {settings.home_attribute} must be an absolute path, not {shorten(home)}"
        )
    return DirectoryUser(
        dn=dn,
        username=username,
        uid=number(settings.uid_attribute),
        gid=number(settings.gid_attribute),
        home=home,
        groups=groups,
        disabled=disabled_reason(attrs, settings, today),
    )


def today_in_days() -> int:
    return int(time.time() // 86400)


class UserDirectory:
    def __init__(self, client: LDAPClient, settings: DirectorySettings, today=today_in_days):
        self.client = client
        self.settings = settings
        self.today = today

    # ---- the two questions the authenticator asks -----------------------------------------------
    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The user when `password` is theirs; None for an unknown user or a wrong password.
        `username` must already be normalized and validated (names.checked_username)."""
        if not password:
            return None  # an empty password would be an unauthenticated bind: never sent
        if self.settings.direct_bind:
            return self._authenticate_direct(username, password)
        entry = self.client.as_service(lambda conn: self._find(conn, username))
        if entry is None or not self.client.check_password(entry[0], password):
            return None
        groups = self.client.as_service(lambda conn: self._groups(conn, entry[0], username))
        return user_from_entry(entry, username, groups, self.settings, self.today())

    def lookup(self, username: str) -> DirectoryUser | None:
        """The user as the service account sees it now (no password): for refreshing roles."""

        def read(conn):
            entry = self._find(conn, username)
            return entry and user_from_entry(
                entry, username, self._groups(conn, entry[0], username), self.settings, self.today()
            )

        return self.client.as_service(read)

    # ---- steps -----------------------------------------------------------------------------------
    def _authenticate_direct(self, username: str, password: str) -> DirectoryUser | None:
        dn = ldap_dn(self.settings.bind_dn_template, username)
        try:
            conn = self.client.open(dn, password)
        except InvalidCredentials:
            return None
        try:
            entry = self._find(conn, username, base=dn)
            if entry is None:
                log.warning("LDAP: %s can bind but its entry does not match user_search_filter", dn)
                return None
            return user_from_entry(
                entry, username, self._groups(conn, dn, username), self.settings, self.today()
            )
        finally:
            unbind_quietly(conn)

    def _find(self, conn: ldap3.Connection, username: str, base: str = "") -> Entry | None:
        """The one entry of `username` (None when there is none; more than one is refused)."""
        search_filter = ldap_filter(self.settings.user_search_filter, username=username)
        entries = self.client.search(
            conn,
            base or self.settings.user_search_base,
            search_filter,
            self.settings.user_attributes(),
            scope=ldap3.BASE if base else ldap3.SUBTREE,
            size_limit=2,  # enough to see that a name is ambiguous, never a whole subtree
        )
        if len(entries) > 1:
            log.error(
                "LDAP: user name %s matches more than one entry (%s); login refused",
                shorten(username),
                search_filter,
            )
            return None
        return entries[0] if entries else None

    def _groups(self, conn: ldap3.Connection, user_dn: str, username: str) -> tuple[str, ...]:
        search_filter = ldap_filter(self.settings.group_search_filter, user_dn=user_dn, username=username)
        name = self.settings.group_name_attribute
        entries = self.client.search(conn, self.settings.group_search_base, search_filter, [name])
        return tuple(sorted({v for _, attrs in entries for v in attrs.get(name.lower(), [])}))
