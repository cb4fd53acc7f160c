"""Connections to the directory: server URLs, TLS, time-outs, and a service connection that is
re-opened when the server went away (an LDAP restart needs no hub restart).

TLS is on unless a site turns it off: `ldaps://` URLs speak TLS from the first byte, `ldap://`
URLs are upgraded with StartTLS before any bind, and a server that refuses StartTLS or presents
a certificate the CA file does not vouch for fails the operation ("fail closed"). The server's
name is checked against its certificate.

Everything here blocks (ldap3's SYNC strategy): the authenticator runs it in worker threads.
No password is ever logged or put into an exception message.
"""

from __future__ import annotations

import math
import os
import ssl
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import LDAPException

FIELD = "CarmeLDAPAuthenticator.server_urls"
# ldap3 result descriptions that are not a problem of the directory
SEARCH_OK = {"success", "noSuchObject", "sizeLimitExceeded"}
# bind results that mean "not these credentials" (a DN that does not exist or cannot exist included)
BIND_REFUSED = {"invalidCredentials", "invalidDNSyntax", "noSuchObject"}


class DirectoryUnavailable(Exception):
    """No server could be reached, TLS failed, or a server refused an operation (message says why)."""


class InvalidCredentials(Exception):
    """The directory refused the user name and password (or the password was empty)."""


@dataclass(frozen=True)
class ServerAddress:
    url: str
    host: str
    port: int
    ldaps: bool


def parse_server_url(url: str, field: str = FIELD) -> ServerAddress:
    """`ldap://host[:port]` or `ldaps://host[:port]`; ValueError naming `field` otherwise."""
    if not isinstance(url, str):
        raise ValueError(f"{field}: {url!r} is not a URL")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("ldap", "ldaps"):
        raise ValueError(f"{field}: {url!r} must start with ldap:// or ldaps://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{field}: {url!r} has an invalid port") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.path not in ("", "/"):
        raise ValueError(f"{field}: {url!r} must be scheme://host[:port] with nothing else")
    ldaps = parts.scheme == "ldaps"
    return ServerAddress(
        url=url.strip(), host=parts.hostname, port=port or (636 if ldaps else 389), ldaps=ldaps
    )


@dataclass(frozen=True)
class ConnectionSettings:
    servers: tuple[ServerAddress, ...]  # tried in order
    starttls: bool = True  # upgrade ldap:// with StartTLS (required, not opportunistic)
    ca_file: str = ""  # PEM CA bundle; empty: the system's CAs
    verify: bool = True  # verify the server certificate and its name
    connect_timeout: float = 5.0
    receive_timeout: float = 10.0

    def uses_tls(self, server: ServerAddress) -> bool:
        return server.ldaps or self.starttls


Entry = tuple[str, dict[str, list[str]]]  # (dn, {lower-case attribute name: values})


class LDAPClient:
    def __init__(
        self,
        settings: ConnectionSettings,
        service_dn: str = "",
        service_password: Callable[[], str] = lambda: "",
    ):
        if not settings.servers:
            raise ValueError(f"{FIELD} is empty: name at least one ldap:// or ldaps:// server")
        self.settings = settings
        self.service_dn = service_dn
        self._service_password = service_password
        self._service: ldap3.Connection | None = None
        self._lock = threading.Lock()

    # ---- connections ---------------------------------------------------------------------------
    def _tls(self) -> ldap3.Tls:
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED if self.settings.verify else ssl.CERT_NONE,
            ca_certs_file=self.settings.ca_file or None,
        )

    def _describe_tls(self, server: ServerAddress) -> str:
        how = "LDAPS" if server.ldaps else "StartTLS" if self.settings.starttls else "plain LDAP (no TLS)"
        ca = f", CA file {self.settings.ca_file}" if self.settings.ca_file else ", system CAs"
        return how + (ca if self.settings.uses_tls(server) else "")

    def open(self, dn: str, password: str) -> ldap3.Connection:
        """A connection bound as `dn`. InvalidCredentials when the directory says no,
        DirectoryUnavailable when no server could be asked. Never an anonymous/unauthenticated bind."""
        if not dn or not password:
            raise InvalidCredentials("empty user DN or password: refused before binding")
        problems = []
        for server in self.settings.servers:
            conn = ldap3.Connection(
                ldap3.Server(
                    server.host,
                    port=server.port,
                    use_ssl=server.ldaps,
                    tls=self._tls(),
                    get_info=ldap3.NONE,
                    connect_timeout=self.settings.connect_timeout,
                ),
                user=dn,
                password=password,
                authentication=ldap3.SIMPLE,
                client_strategy=ldap3.SYNC,
                read_only=True,
                auto_referrals=False,
                raise_exceptions=False,
                receive_timeout=max(1, math.ceil(self.settings.receive_timeout)),  # ldap3 packs it as an int
            )
            try:
                conn.open(read_server_info=False)
                if not server.ldaps and self.settings.starttls:
                    conn.start_tls(read_server_info=False)
                if conn.bind(read_server_info=False):
                    return conn
                result = conn.result or {}
            except (LDAPException, OSError) as e:
                problems.append(f"{server.url} ({self._describe_tls(server)}): {explain(e)}")
                unbind_quietly(conn)
                continue
            unbind_quietly(conn)
            if result.get("description") in BIND_REFUSED:
                raise InvalidCredentials(f"{server.url} refused the credentials of {dn}")
            problems.append(
                f"{server.url} ({self._describe_tls(server)}): bind refused: "
                f"{result.get('description')} {result.get('message') or ''}".rstrip()
            )
        raise DirectoryUnavailable("; ".join(problems))

    def check_password(self, dn: str, password: str) -> bool:
        """True when `dn` can bind with `password` (the connection is closed again)."""
        try:
            unbind_quietly(self.open(dn, password))
        except InvalidCredentials:
            return False
        return True

    def as_service(self, operation: Callable[[ldap3.Connection], object]):
        """operation(connection) on the shared service connection (opened on first use). When the
        connection broke (server restart, network), it is re-opened once and the operation repeated."""
        if not self.service_dn:
            raise DirectoryUnavailable("no service account (CarmeLDAPAuthenticator.bind_dn) to search with")
        with self._lock:
            for attempt in (1, 2):
                if self._service is None or self._service.closed:
                    try:
                        self._service = self.open(self.service_dn, self._service_password())
                    except InvalidCredentials:
                        raise DirectoryUnavailable(
                            f"the directory refused the service account {self.service_dn} "
                            "(CarmeLDAPAuthenticator.bind_dn / bind_password)"
                        ) from None
                try:
                    return operation(self._service)
                except (LDAPException, OSError) as e:
                    self._close_service()
                    if attempt == 2:
                        raise DirectoryUnavailable(
                            f"the service connection failed twice: {explain(e)}"
                        ) from None

    def _close_service(self) -> None:
        if self._service is not None:
            unbind_quietly(self._service)
            self._service = None

    def close(self) -> None:
        with self._lock:
            self._close_service()

    # ---- operations ----------------------------------------------------------------------------
    def search(
        self,
        conn: ldap3.Connection,
        base: str,
        search_filter: str,
        attributes: list[str],
        scope: str = ldap3.SUBTREE,
        size_limit: int = 0,
    ) -> list[Entry]:
        """Entries (dn, attributes as lists of str) found by one search on `conn`."""
        conn.search(
            base,
            search_filter,
            search_scope=scope,
            attributes=attributes,
            size_limit=size_limit,
            time_limit=max(1, int(self.settings.receive_timeout)),
        )
        result = conn.result or {}
        if result.get("description") not in SEARCH_OK:
            raise DirectoryUnavailable(
                f"search under {base} failed: {result.get('description')} "
                f"{result.get('message') or ''}".rstrip()
            )
        entries = []
        for item in conn.response or []:
            if item.get("type") != "searchResEntry":
                continue  # referrals are not followed
            attrs = {
                name.lower(): [
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
                ]
                for name, values in (item.get("raw_attributes") or {}).items()
            }
            entries.append((item["dn"], attrs))
        return entries


def unbind_quietly(conn: ldap3.Connection) -> None:
    """Close `conn`; a connection that is already broken closes silently."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass


def explain(error: BaseException) -> str:
    """`Type: message` of an ldap3/socket error, without ldap3's tuple wrapping."""
    text = " ".join(str(a) for a in error.args) if error.args else str(error)
    return f"{type(error).__name__}: {text}"


def service_password(path: str, env_name: str) -> str:
    """The service account's password: from `path` (mode 0600 or stricter; trailing newline
    dropped) when set, else from the environment variable `env_name`. Read at each (re)connect."""
    if path:
        try:
            if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise DirectoryUnavailable(
                    f"CarmeLDAPAuthenticator.bind_password_file {path} is readable by group or others: "
                    "chmod 0600 it"
                )
            with open(path) as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise DirectoryUnavailable(f"CarmeLDAPAuthenticator.bind_password_file: {e}") from None
    password = os.environ.get(env_name, "")
    if not password:
        raise DirectoryUnavailable(f"no service account password: set bind_password_file or ${env_name}")
    return password
