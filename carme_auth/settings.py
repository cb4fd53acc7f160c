"""The settings of CarmeLDAPAuthenticator (traitlets, each with its help), their checks, and the
parts built from them: the directory (client + user lookups) and the login throttle.

A mixin of the authenticator: the settings live in the `CarmeLDAPAuthenticator:` section of the
site settings file, like the JupyterHub Authenticator settings it inherits.
"""

from __future__ import annotations

from traitlets import Bool, Dict, Float, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .client import ConnectionSettings, LDAPClient, parse_server_url, service_password
from .directory import DirectorySettings, UserDirectory
from .roles import DEFAULT_ROLE_GROUPS, check_role_groups
from carme_core.throttle import LoginThrottle
from .throttle_store import SQLThrottleStore

BIND_PASSWORD_ENV = "CARME_LDAP_BIND_PASSWORD"


class LDAPSettings(LoggingConfigurable):
    # ---- servers and TLS -------------------------------------------------------------------------
    server_urls = List(
        Unicode(),
        config=True,
        help="LDAP servers, tried in order: ldap://host[:port] (StartTLS, see `starttls`) or "
        "ldaps://host[:port].",
    )
    starttls = Bool(
        True,
        config=True,
        help="Upgrade ldap:// connections with StartTLS before binding. Required, not opportunistic: a "
        "server that refuses it, or whose certificate does not verify, fails the login. "
        "False sends passwords in clear text (never do that outside a test).",
    )
    tls_ca_file = Unicode(
        "",
        config=True,
        help="PEM file of the CA(s) that sign the LDAP servers' certificates (empty: the system's CAs).",
    )
    tls_verify = Bool(
        True,
        config=True,
        help="Verify the server's certificate and name. Only for debugging: False accepts any server.",
    )
    connect_timeout = Float(5.0, config=True, help="Seconds to wait for a TCP connection to an LDAP server.")
    receive_timeout = Float(
        10.0, config=True, help="Seconds to wait for an LDAP server's answer to one operation."
    )

    # ---- how users are found ---------------------------------------------------------------------
    bind_dn = Unicode(
        "",
        config=True,
        help="DN of the service account that searches for users and groups (search-then-bind, refresh_user). "
        "Its password comes from `bind_password_file` or the $CARME_LDAP_BIND_PASSWORD environment variable.",
    )
    bind_password_file = Unicode(
        "",
        config=True,
        help="File holding the service account's password (trailing newline ignored). Must not be readable "
        "by group or others. Read at each (re)connect, so a rotated password needs no restart.",
    )
    user_search_base = Unicode(
        "", config=True, help="Where users are searched (search-then-bind), e.g. ou=people,dc=example,dc=org."
    )
    user_search_filter = Unicode(
        "(&(objectClass=posixAccount)(uid={username}))",
        config=True,
        help="Filter that finds exactly one user; {username} is replaced by the escaped, normalized "
        "login name.",
    )
    username_attribute = Unicode(
        "uid", config=True, help="Attribute that holds the login name (checked on the entry found)."
    )
    bind_dn_template = Unicode(
        "",
        config=True,
        help="Direct bind instead of search-then-bind: the user's DN with {username}, e.g. "
        "uid={username},ou=people,dc=example,dc=org (the name is escaped as an RDN value). The user's own "
        "entry and groups are then read with the user's connection.",
    )
    group_search_base = Unicode(
        "", config=True, help="Where groups are searched, e.g. ou=groups,dc=example,dc=org."
    )
    group_search_filter = Unicode(
        "(&(objectClass=groupOfNames)(member={user_dn}))",
        config=True,
        help="Filter for the groups of a user: {user_dn} (the user's DN) and {username} are replaced, "
        "escaped. posixGroup directories: (&(objectClass=posixGroup)(memberUid={username})).",
    )
    group_name_attribute = Unicode("cn", config=True, help="Attribute of a group entry that holds its name.")
    uid_attribute = Unicode(
        "uidNumber", config=True, help="Attribute with the user's numeric uid (the job runs as it)."
    )
    gid_attribute = Unicode("gidNumber", config=True, help="Attribute with the user's numeric primary gid.")
    home_attribute = Unicode(
        "homeDirectory", config=True, help="Attribute with the user's home (bound into the container)."
    )
    account_expiry_attribute = Unicode(
        "shadowExpire",
        config=True,
        help="Attribute with the day (days since 1970-01-01) the account expires; from that day on "
        "logins are refused. Negative or absent: never. Empty string: no expiry check.",
    )
    account_disabled_attribute = Unicode(
        "",
        config=True,
        help="Attribute that marks a disabled account (e.g. nsAccountLock); empty: no such check.",
    )
    account_disabled_values = List(
        Unicode(),
        ["true", "yes", "1", "disabled"],
        config=True,
        help="Values of `account_disabled_attribute` (case-insensitive) that disable the account.",
    )

    # ---- roles -----------------------------------------------------------------------------------
    role_groups = Dict(
        dict(DEFAULT_ROLE_GROUPS),
        config=True,
        help="Directory group name -> Carme role (user, power or admin). The highest role of a user's groups "
        "wins; admins are hub admins; the role is also the user's JupyterHub group. A user in none of these "
        "groups cannot log in (the form says so). This mapping is the allow list of the hub.",
    ).tag(allow_config=True)

    # ---- brute force -----------------------------------------------------------------------------
    login_throttle_max_failures = Integer(
        5,
        config=True,
        help="Failed logins for one user name from one client address within `login_throttle_window` "
        "that start a cool-down of that name from that address (0: off). A name is never locked from "
        "every address: that would let anyone lock anyone out.",
    )
    login_throttle_max_address_failures = Integer(
        20,
        config=True,
        help="Failed logins from one client address within the window that start a cool-down (0: off).",
    )
    login_throttle_window = Float(300.0, config=True, help="Seconds over which failed logins are counted.")
    login_throttle_trusted_proxies = List(
        Unicode(),
        ["127.0.0.1", "::1"],
        config=True,
        help="Addresses of the proxies in front of the hub (configurable-http-proxy). Only requests from "
        "them may name the client in X-Forwarded-For; anyone else is counted as the address it connects from.",
    )
    login_throttle_trusted_hops = Integer(
        1,
        config=True,
        help="How many trusted proxies append to X-Forwarded-For (configurable-http-proxy alone: 1; "
        "nginx in front of it: 2). The client is that many entries from the right; the rest is the "
        "client's own words.",
    )
    login_throttle_trust_x_real_ip = Bool(
        False,
        config=True,
        help="Take the client from X-Real-Ip. Only when the outermost proxy SETS that header: "
        "configurable-http-proxy passes a client's own X-Real-Ip through.",
    )
    login_throttle_db_url = Unicode(
        "",
        config=True,
        help="Database for the throttle's state, so a hub restart forgets no cool-down "
        "(empty: the hub's own database, JupyterHub.db_url).",
    )
    login_throttle_cooldown = Float(
        300.0,
        config=True,
        help="Seconds a throttled user name / address is refused without asking the directory. Admins "
        "see and can end cool-downs at /hub/api/carme/login-throttle (GET, DELETE "
        "?kind=user|address&key=...).",
    )

    # ---- validation --------------------------------------------------------------------------------
    @validate("server_urls")
    def _check_server_urls(self, proposal):
        for url in proposal.value:
            parse_server_url(url)
        return proposal.value

    @validate("role_groups")
    def _check_role_groups(self, proposal):
        return check_role_groups(proposal.value)

    @validate("connect_timeout", "receive_timeout", "login_throttle_window")
    def _check_positive(self, proposal):
        if proposal.value <= 0:
            raise ValueError(
                f"CarmeLDAPAuthenticator.{proposal.trait.name} must be > 0, not {proposal.value}"
            )
        return proposal.value

    @validate("login_throttle_max_failures", "login_throttle_max_address_failures", "login_throttle_cooldown")
    def _check_not_negative(self, proposal):
        if proposal.value < 0:
            raise ValueError(
                f"CarmeLDAPAuthenticator.{proposal.trait.name} must be >= 0, not {proposal.value}"
            )
        return proposal.value

    def check_ldap_settings(self) -> None:
        """Settings that depend on each other, checked at hub start (a clear message, not a failed
        login later)."""
        if not self.server_urls:
            raise ValueError("CarmeLDAPAuthenticator.server_urls is empty: name the LDAP server(s)")
        if not self.bind_dn_template and not (self.bind_dn and self.user_search_base):
            raise ValueError(
                "CarmeLDAPAuthenticator: set bind_dn and user_search_base (search-then-bind) "
                "or bind_dn_template (direct bind)"
            )
        if not self.group_search_base:
            raise ValueError(
                "CarmeLDAPAuthenticator.group_search_base is empty: name where the role groups are"
            )
        for field in ("user_search_filter", "group_search_filter"):
            value = getattr(self, field)
            if not (value.startswith("(") and value.endswith(")")):
                raise ValueError(
                    f"CarmeLDAPAuthenticator.{field} must be an LDAP filter in parentheses, not {value!r}"
                )
        if self.bind_dn_template and "{username}" not in self.bind_dn_template:
            raise ValueError("CarmeLDAPAuthenticator.bind_dn_template must contain {username}")
        if not self.starttls and any(not parse_server_url(u).ldaps for u in self.server_urls):
            self.log.warning(
                "CarmeLDAPAuthenticator: starttls is False: passwords go to ldap:// servers in clear text"
            )
        if not self.tls_verify:
            self.log.warning(
                "CarmeLDAPAuthenticator: tls_verify is False: any server can pose as the directory"
            )

    # ---- the parts built from the settings ----------------------------------------------------------
    def make_throttle(self) -> LoginThrottle:
        url = self.login_throttle_db_url or getattr(self.parent, "db_url", "")
        if not url:
            self.log.warning("Login throttle: no database (no JupyterHub.db_url): cool-downs end at a hub restart")
        return LoginThrottle(
            max_failures=self.login_throttle_max_failures,
            max_address_failures=self.login_throttle_max_address_failures,
            window=self.login_throttle_window,
            cooldown=self.login_throttle_cooldown,
            store=SQLThrottleStore(url) if url else None,
        )

    def make_directory(self) -> UserDirectory:
        connection = ConnectionSettings(
            servers=tuple(parse_server_url(u) for u in self.server_urls),
            starttls=self.starttls,
            ca_file=self.tls_ca_file,
            verify=self.tls_verify,
            connect_timeout=self.connect_timeout,
            receive_timeout=self.receive_timeout,
        )
        settings = DirectorySettings(
            user_search_base=self.user_search_base,
            user_search_filter=self.user_search_filter,
            username_attribute=self.username_attribute,
            bind_dn_template=self.bind_dn_template,
            group_search_base=self.group_search_base,
            group_search_filter=self.group_search_filter,
            group_name_attribute=self.group_name_attribute,
            uid_attribute=self.uid_attribute,
            gid_attribute=self.gid_attribute,
            home_attribute=self.home_attribute,
            expiry_attribute=self.account_expiry_attribute,
            disabled_attribute=self.account_disabled_attribute,
            disabled_values=tuple(self.account_disabled_values),
        )
        return UserDirectory(LDAPClient(connection, self.bind_dn, self._service_password), settings)

    def _service_password(self) -> str:
        return service_password(self.bind_password_file, BIND_PASSWORD_ENV)
