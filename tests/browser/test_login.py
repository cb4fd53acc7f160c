"""Issue 4 acceptance 1 in a real browser: the hub's login form against the real slapd.

Headless Debian chromium (Playwright) on a real JupyterHub + proxy configured for LDAP
(carme.example.yaml, authenticator: ldap) on the LDAP suites' ports.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.integration import ldap_directory as ldap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(cluster):
    ldap.script("up")
    with ldap.ldap_hub() as hub:
        yield hub


def log_in(page, hub, username: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()


def test_alice_logs_in_and_gets_the_spawn_page(page, hub):
    log_in(page, hub, "alice", ldap.passwords()["alice"])
    page.wait_for_url("**/hub/spawn**")
    expect(page.locator("h1")).to_contain_text("Server Options")
    expect(page.locator("#spawn_form")).to_be_visible()
    page.artifact("spawn page")
    assert hub.session.get(f"{hub.api}/users/alice").json()["auth_state"]["uid"] == 10001


def test_a_wrong_password_shows_the_error_on_the_form(page, hub):
    log_in(page, hub, "alice", "not-her-password")
    expect(page.locator("p.login_error")).to_have_text("Invalid username or password")
    expect(page.locator("#login_submit")).to_be_visible()
    assert "/hub/login" in page.url


def test_bob_without_a_carme_group_is_refused_with_a_message(page, hub):
    log_in(page, hub, "bob", ldap.passwords()["bob"])
    error = page.locator("p.login_error")
    expect(error).to_contain_text("bob is not in any group that gives access to Carme")
    expect(error).to_contain_text("Please ask your administrators for access.")
    assert "/hub/login" in page.url
    assert hub.session.get(f"{hub.api}/users/bob").status_code == 404
