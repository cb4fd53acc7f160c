"""Issue 4 acceptance 3: TLS to the directory through a real hub. StartTLS is required; with a
CA that did not sign the server's certificate the login fails closed with a clear log line, and
the password never reaches the server. LDAPS with the right CA works."""

from __future__ import annotations

import time

import pytest

from . import ldap_directory as ldap
from .ldap_directory import SlapdLog, form_login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def slapd(cluster):
    ldap.script("up")


def test_starttls_with_a_wrong_ca_fails_closed(tmp_path):
    """Acceptance 3."""
    tmp_path.chmod(0o755)
    other_ca = ldap.make_unrelated_ca(tmp_path)
    env = {"CARME__CarmeLDAPAuthenticator__tls_ca_file": str(other_ca)}
    with ldap.ldap_hub(extra_env=env) as hub:
        log = SlapdLog()
        result = form_login(hub.url, "alice", ldap.passwords()["alice"])
        assert not result.ok and result.status == 503, result
        assert (
            result.error
            == "The user directory cannot be reached right now. Please try again in a few minutes."
        )
        hub_log = hub.log_path.read_text(errors="replace")
        line = next((x for x in hub_log.splitlines() if "LDAP login of alice failed closed" in x), None)
        assert line is not None, hub.log_tail()
        assert "ldap://127.0.0.1:3389 (StartTLS, CA file" in line and str(other_ca) in line, line
        assert "certificate verify failed" in line, line
        time.sleep(0.3)
        assert log.binds() == [], "a password was sent over a connection that did not verify"
        assert hub.session.get(f"{hub.api}/users/alice").status_code == 404


def test_ldaps_with_the_right_ca_logs_in():
    env = {"CARME__CarmeLDAPAuthenticator__server_urls": f"[{ldap.LDAPS_URL}]"}
    with ldap.ldap_hub(extra_env=env) as hub:
        assert form_login(hub.url, "dave", ldap.passwords()["dave"]).ok
        assert hub.session.get(f"{hub.api}/users/dave").json()["auth_state"]["role"] == "power"
