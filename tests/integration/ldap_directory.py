"""The development directory (dev/ldap.sh) as tests see it: passwords, changes, slapd's log,
and a hub that logs in against it.

The directory is the real slapd on 127.0.0.1:3389 (StartTLS) / 6636 (LDAPS). Tests that change it
put it back in a `finally`. LDAP hubs use their own ports and job prefix: other suites run hubs
on 18xxx/28xxx/38xxx at the same time.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from .hub import REPO

STATE = Path(os.environ.get("CARME_DEV_STATE", "/var/lib/carme-dev")) / "ldap"
SCRIPT = REPO / "dev" / "ldap.sh"
LDAP_URL = "ldap://127.0.0.1:3389"
LDAPS_URL = "ldaps://127.0.0.1:6636"
CA_FILE = STATE / "tls" / "ca.crt"
SERVICE_PASSWORD_FILE = STATE / "secrets" / "service-password"
SUFFIX = "dc=example,dc=org"
SERVICE_DN = f"cn=carme-hub,ou=services,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
POSIX_GROUPS = f"ou=posixgroups,{SUFFIX}"
LOG = STATE / "log" / "slapd.log"

LDAP_HUB_PORTS = (18200, 18281, 18201)
LDAP_JOB_PREFIX = "carme-ldap-"
# an LDAP hub for tests: short cool-down, no per-address lock-out (all tests come from 127.0.0.1)
LDAP_HUB_ENV = {
    "CARME__carme__authenticator": "ldap",  # test hubs default to dummy (tests/integration/hub.py)
    "CARME__CarmeLDAPAuthenticator__login_throttle_max_failures": "5",
    "CARME__CarmeLDAPAuthenticator__login_throttle_max_address_failures": "1000",
    "CARME__CarmeLDAPAuthenticator__login_throttle_window": "120",
    "CARME__CarmeLDAPAuthenticator__login_throttle_cooldown": "6",
}


def script(*args: str) -> str:
    r = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"dev/ldap.sh {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}", pytrace=False)
    return r.stdout + r.stderr


def passwords() -> dict[str, str]:
    lines = (STATE / "secrets" / "passwords").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if line.strip())


def service_password() -> str:
    return SERVICE_PASSWORD_FILE.read_text().strip()


def modify(ldif: str) -> None:
    """ldapmodify as the directory manager over StartTLS (password from its 0600 file, never argv)."""
    r = subprocess.run(
        [
            "ldapmodify",
            "-x",
            "-ZZ",
            "-H",
            LDAP_URL,
            "-D",
            f"cn=manager,{SUFFIX}",
            "-y",
            str(STATE / "secrets" / "manager-password"),
        ],
        input=ldif,
        capture_output=True,
        text=True,
        env={**os.environ, "LDAPTLS_CACERT": str(CA_FILE), "LDAPTLS_REQCERT": "demand"},
        timeout=30,
    )
    assert r.returncode == 0, f"ldapmodify failed: {r.stderr}\n{ldif}"


def move_user(user: str, from_group: str, to_group: str) -> None:
    """Move `user` between two role groups, in both the groupOfNames and the posixGroup trees."""
    dn = f"uid={user},{PEOPLE}"
    modify(
        f"dn: cn={from_group},{GROUPS}\nchangetype: modify\ndelete: member\nmember: {dn}\n\n"
        f"dn: cn={to_group},{GROUPS}\nchangetype: modify\nadd: member\nmember: {dn}\n\n"
        f"dn: cn={from_group},{POSIX_GROUPS}\nchangetype: modify\ndelete: memberUid\nmemberUid: {user}\n\n"
        f"dn: cn={to_group},{POSIX_GROUPS}\nchangetype: modify\nadd: memberUid\nmemberUid: {user}\n"
    )


def set_attribute(user: str, attribute: str, value: str) -> None:
    modify(f"dn: uid={user},{PEOPLE}\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n")


class SlapdLog:
    """slapd's stats log from a mark on: what the directory was asked, and how many entries each
    search matched (`SEARCH RESULT ... nentries=N`)."""

    SEARCH_RESULT = re.compile(r"conn=(\d+) op=(\d+) SEARCH RESULT .*?nentries=(\d+)")

    def __init__(self):
        self.offset = LOG.stat().st_size

    def text(self) -> str:
        with open(LOG, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def search_results(self) -> list[int]:
        """nentries of every search since the mark."""
        return [int(m.group(3)) for m in self.SEARCH_RESULT.finditer(self.text())]

    def binds(self) -> list[str]:
        """DNs of every bind since the mark."""
        return re.findall(r'BIND dn="([^"]*)" method=', self.text())


# ---- logging in through the hub's own form ---------------------------------------------------------
class LoginResult:
    def __init__(self, response: requests.Response, session: requests.Session):
        self.response = response
        self.session = session
        self.status = response.status_code
        self.location = response.headers.get("Location", "")

    @property
    def ok(self) -> bool:
        return self.status == 302 and "/hub/login" not in self.location

    @property
    def error(self) -> str:
        """The error the login form shows (unescaped), or ''."""
        m = re.search(r'<p class="login_error">\s*(.*?)\s*</p>', self.response.text, re.S)
        return html.unescape(m.group(1)) if m else ""

    def __repr__(self):
        return f"<login {self.status} {self.location!r} error={self.error!r}>"


def form_login(
    hub_url: str, username: str, password: str, session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
) -> LoginResult:
    """POST the hub's login form (with its XSRF token) as a browser would; no redirects followed.
    `headers` go with both requests (e.g. address headers a client made up)."""
    session = session or requests.Session()
    page = session.get(f"{hub_url}/hub/login", headers=headers or {}, timeout=30)
    page.raise_for_status()
    m = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert m, "no _xsrf field on the login form"
    r = session.post(
        f"{hub_url}/hub/login",
        data={"_xsrf": html.unescape(m.group(1)), "username": username, "password": password},
        headers=headers or {},
        allow_redirects=False,
        timeout=60,
    )
    return LoginResult(r, session)


@contextlib.contextmanager
def ldap_hub(**settings):
    """A running hub (tests/integration/conftest.running_hub) configured for the dev directory,
    on the LDAP suites' own ports and job prefix."""
    from .conftest import running_hub

    env = dict(LDAP_HUB_ENV)
    env.update(settings.pop("extra_env", {}))
    with running_hub(ports=LDAP_HUB_PORTS, job_prefix=LDAP_JOB_PREFIX, extra_env=env, **settings) as hub:
        yield hub


def release_throttle(hub) -> None:
    """End every login cool-down of `hub` (through the admin API)."""
    state = hub.session.get(f"{hub.api}/carme/login-throttle").json()
    for lock in state["locked"]:
        hub.session.delete(
            f"{hub.api}/carme/login-throttle", params={"kind": lock["kind"], "key": lock["key"]}
        )


def make_unrelated_ca(directory: Path) -> Path:
    """A CA that did not sign the directory's certificate (for fail-closed TLS tests)."""
    key, cert = directory / "other-ca.key", directory / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=Not the Carme dev LDAP CA",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert
