"""HTTPS for the hub's public side: the `CarmeTLS:` section of the settings file.

    CarmeTLS:
      cert: /etc/carme/tls/server.crt      # PEM, the server certificate (and its chain)
      key: /etc/carme/tls/server.key       # PEM, its private key: mode 0600 (nobody else may read it)
      hsts_max_age: 31536000               # s; Strict-Transport-Security on the hub's pages (0: none)

or, for one run, CARME__CarmeTLS__cert=... CARME__CarmeTLS__key=... (the demo: `make demo TLS=1`).

With a cert and key, `apply_tls(c)` maps the section onto JupyterHub's own settings:
configurable-http-proxy serves HTTPS only with them (JupyterHub.ssl_cert/ssl_key: plain HTTP on
the same port gets no page), the hub's bind_url says https, every cookie the hub, its servers and
their OAuth set is Secure (tornado_settings cookie_options, which JupyterHub hands to the servers
as $JUPYTERHUB_COOKIE_OPTIONS), and the hub's pages send HSTS (tornado_settings headers). Both
files are checked when the hub starts: a missing, unreadable, mismatched or group/world-readable
one stops it with a message naming the setting.
"""

from __future__ import annotations

import os
import ssl
import stat

from traitlets import Bool, Integer, TraitError, Unicode, validate
from traitlets.config import Configurable

HSTS = "Strict-Transport-Security"


class CarmeTLS(Configurable):
    cert = Unicode(
        "",
        allow_none=True,  # `cert:` left empty in YAML
        config=True,
        help="PEM file of the hub's public server certificate (then its intermediate CAs). With `key`, the "
        "proxy serves HTTPS only (JupyterHub.ssl_cert). Empty (default): plain HTTP, for a site that "
        "terminates TLS in front of the hub (then set JupyterHub.tornado_settings yourself).",
    )
    key = Unicode(
        "",
        allow_none=True,
        config=True,
        help="PEM file of the certificate's private key (JupyterHub.ssl_key). It must not be readable by group "
        "or others (mode 0600, owned by the hub's user).",
    )
    hsts_max_age = Integer(
        31536000,
        config=True,
        help="Seconds browsers keep to HTTPS for this host after a hub page (Strict-Transport-Security "
        "max-age; default one year). 0 sends no HSTS header.",
    )
    hsts_include_subdomains = Bool(
        False, config=True, help="Add includeSubDomains to the HSTS header (every host below the hub's name)."
    )

    @validate("hsts_max_age")
    def _non_negative(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(f"CarmeTLS.hsts_max_age must be 0 or more seconds, not {proposal['value']}")
        return proposal["value"]

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key)

    def hsts_value(self) -> str:
        return f"max-age={self.hsts_max_age}" + ("; includeSubDomains" if self.hsts_include_subdomains else "")


def check_files(cert: str, key: str) -> None:
    """SystemExit naming the setting unless `cert` and `key` are readable PEM files that belong together
    and the key is private to its owner."""
    if not cert or not key:
        missing, given = ("cert", "key") if not cert else ("key", "cert")
        raise SystemExit(f"CarmeTLS.{missing} is empty but CarmeTLS.{given} is set: HTTPS needs both")
    for name, path in (("cert", cert), ("key", key)):
        if not os.path.isabs(path):
            raise SystemExit(f"CarmeTLS.{name}: {path!r} must be an absolute path")
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise SystemExit(f"CarmeTLS.{name}: {path}: {e.strerror}") from None
        if not stat.S_ISREG(mode):
            raise SystemExit(f"CarmeTLS.{name}: {path} is not a file")
        if not os.access(path, os.R_OK):
            raise SystemExit(f"CarmeTLS.{name}: {path} is not readable by the hub's user")
        if name == "key" and mode & 0o077:
            raise SystemExit(f"CarmeTLS.key: {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                             f"chmod 0600 it")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(cert, "rb") as f:
        try:
            x509.load_pem_x509_certificate(f.read())
        except ValueError:
            raise SystemExit(f"CarmeTLS.cert: {cert} is not a PEM certificate") from None
    with open(key, "rb") as f:
        try:
            load_pem_private_key(f.read(), password=None)
        except (ValueError, TypeError):  # TypeError: an encrypted key (the proxy cannot ask for its password)
            raise SystemExit(f"CarmeTLS.key: {key} is not an unencrypted PEM private key") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise SystemExit(f"CarmeTLS.key: {key} is not the private key of CarmeTLS.cert {cert} ({e.reason})") from None


def https_url(url: str) -> str:
    """`url` with https instead of http (JupyterHub.bind_url must agree with ssl_cert)."""
    scheme, sep, rest = url.partition("://")
    return f"https://{rest}" if sep and scheme == "http" else url


def apply_tls(c) -> None:
    """Map c.CarmeTLS onto JupyterHub's settings (nothing without a cert and key)."""
    try:
        tls = CarmeTLS(config=c)
    except (TraitError, ValueError) as e:  # a value of the wrong type or range, named by traitlets or above
        raise SystemExit(f"CarmeTLS: {e}") from None
    if not tls.enabled:
        return
    check_files(tls.cert or "", tls.key or "")
    hub = c.JupyterHub
    for name, value in (("ssl_cert", tls.cert), ("ssl_key", tls.key)):
        if hub.get(name) and hub[name] != value:
            raise SystemExit(f"JupyterHub.{name} ({hub[name]}) and CarmeTLS disagree: set only CarmeTLS")
    hub.ssl_cert, hub.ssl_key = tls.cert, tls.key
    hub.bind_url = https_url(hub.get("bind_url") or "https://:8000")
    settings = dict(hub.get("tornado_settings") or {})
    # JupyterHub marks cookies Secure when it sees https (X-Forwarded-Proto from the proxy); say it outright,
    # so the hub's, the _xsrf and (through $JUPYTERHUB_COOKIE_OPTIONS) the servers' OAuth cookies all are
    settings["cookie_options"] = {**(settings.get("cookie_options") or {}), "secure": True}
    if tls.hsts_max_age:
        headers = dict(settings.get("headers") or {})
        headers.setdefault(HSTS, tls.hsts_value())
        settings["headers"] = headers
    hub.tornado_settings = settings
