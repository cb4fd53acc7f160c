"""Carme's LDAP login: `CarmeLDAPAuthenticator` (JupyterHub entry point `carme-ldap`).

    names.py          user names: normalized and validated before the directory is asked
    client.py         connections: servers, TLS (LDAPS / StartTLS, verified), time-outs, reconnect
    directory.py      the user's entry, password, uid/gid/home, groups, disabled accounts
    roles.py          directory groups -> Carme role (user, power, admin)
    throttle.py       brute-force limiter (per user name and per client address)
    throttle_api.py   /hub/api/carme/login-throttle for admins
    authenticator.py  the JupyterHub Authenticator: settings and hooks only

Imports nothing from other Carme packages. The authenticator is loaded lazily, so the pure
modules can be used without JupyterHub.
"""

__all__ = ["CarmeLDAPAuthenticator"]


def __getattr__(name):
    if name == "CarmeLDAPAuthenticator":
        from .authenticator import CarmeLDAPAuthenticator

        return CarmeLDAPAuthenticator
    raise AttributeError(f"module 'carme_auth' has no attribute {name!r}")
