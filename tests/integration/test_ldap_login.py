"""Issue 4 through the hub's own login form (HTTP, as a browser posts it), against the real slapd.

A real JupyterHub + proxy from jupyterhub_config.py with carme.example.yaml (authenticator: ldap)
on the LDAP suites' ports. Each test names the acceptance item it shows. The browser version of
acceptance 1 is tests/browser/test_login.py.
"""

from __future__ import annotations

import time

import pytest
import requests

from . import ldap_directory as ldap
from .ldap_directory import SlapdLog, form_login

pytestmark = pytest.mark.integration

INVALID = "Invalid username or password"
INJECTIONS = ["*", "alice)(uid=*", "*)(|(uid=*", "admin\\00", "*)(uid=admin", "ad*"]
REFRESH_AGE = 2


@pytest.fixture(scope="module")
def hub(cluster):
    ldap.script("up")
    with ldap.ldap_hub(extra_env={"CARME__Authenticator__auth_refresh_age": str(REFRESH_AGE)}) as hub:
        yield hub


@pytest.fixture(autouse=True)
def no_cooldowns(hub):
    ldap.release_throttle(hub)
    yield
    ldap.release_throttle(hub)


def user_model(hub, name: str) -> dict:
    r = hub.session.get(f"{hub.api}/users/{name}")
    r.raise_for_status()
    return r.json()


def wait_for_log(hub, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = hub.log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the hub log:\n{hub.log_tail()}")


def test_alice_logs_in_with_her_directory_identity(hub):
    """Acceptance 1 (HTTP) and the auth_state contract: uid/gid/home/groups/role from LDAP."""
    result = form_login(hub.url, "alice", ldap.passwords()["alice"])
    assert result.ok and result.location.endswith("/hub/spawn"), result
    model = user_model(hub, "alice")
    assert model["admin"] is False and model["groups"] == ["user"]
    assert model["auth_state"] == {
        "username": "alice",
        "uid": 10001,
        "gid": 10000,
        "home": "/home/alice",
        "groups": ["carme-users"],
        "role": "user",
    }


def test_wrong_and_empty_passwords_and_users_without_role(hub):
    """Acceptance 1 (HTTP): wrong password -> the form's error; bob (no Carme group) -> refused with
    a message; frank (shadowExpire in the past) -> refused as disabled."""
    pw = ldap.passwords()
    for name, password in [("alice", pw["bob"]), ("alice", ""), ("nobody", pw["alice"])]:
        result = form_login(hub.url, name, password)
        assert not result.ok and result.status == 403 and result.error == INVALID, (name, result)
    bob = form_login(hub.url, "bob", pw["bob"])
    assert bob.status == 403 and "bob is not in any group that gives access to Carme" in bob.error, bob
    frank = form_login(hub.url, "frank", pw["frank"])
    assert frank.status == 403 and "disabled" in frank.error, frank
    for name in ("bob", "frank", "nobody"):
        assert hub.session.get(f"{hub.api}/users/{name}").status_code == 404


def test_injected_names_fail_and_no_search_matches_more_than_one_entry(hub):
    """Acceptance 2: `*`, `alice)(uid=*`, `*)(|(uid=*`, `admin\\00` all fail, even with admin's
    password; slapd's stats log shows no search that matched more than one entry, and no bind but
    alice's. (A raw NUL never arrives: tornado turns control characters in form fields into spaces,
    so `admin<NUL>` is plain `admin`; test_ldap_directory sends raw NULs to the directory itself.)"""
    pw = ldap.passwords()
    log = SlapdLog()
    assert form_login(hub.url, "alice", pw["alice"]).ok  # a real login: the log does count searches
    attempts = [(name, password) for name in INJECTIONS for password in (pw["admin"], pw["alice"], "*")]
    for name, password in attempts:
        result = form_login(hub.url, name, password)
        assert not result.ok and result.error == INVALID, (name, result)
    time.sleep(0.5)
    results = log.search_results()
    assert 1 in results, log.text()[-2000:]  # alice's own search matched her entry
    assert max(results) <= 1, f"a search matched more than one entry: {results}"
    assert [dn for dn in log.binds() if dn.startswith("uid=")] == [f"uid=alice,{ldap.PEOPLE}"]
    users = {u["name"] for u in hub.session.get(f"{hub.api}/users").json()}
    assert not users & set(INJECTIONS), users
    wait_for_log(hub, "Login refused before asking the directory: user name '*)(|(uid=*'")


def test_ten_wrong_passwords_then_a_cooldown(hub):
    """Acceptance 4: ten wrong passwords -> the right one is refused during the cool-down (logged,
    visible to admins), and accepted after it."""
    pw = ldap.passwords()
    errors = [form_login(hub.url, "erin", "wrong-%d" % i).error for i in range(10)]
    assert errors[:5] == [INVALID] * 5, errors
    assert all(e.startswith("Too many failed logins") for e in errors[5:]), errors
    refused = form_login(hub.url, "erin", pw["erin"])
    assert refused.status == 429 and refused.error.startswith(
        "Too many failed logins. Please try again in"
    ), refused
    locked = hub.session.get(f"{hub.api}/carme/login-throttle").json()["locked"]
    assert [(x["kind"], x["key"], x["failures"]) for x in locked] == [("user", "erin", 5)], locked
    wait_for_log(hub, "Login throttle: user erin is locked for 6 s after 5 failed logins")
    time.sleep(locked[0]["remaining_seconds"] + 0.5)
    assert form_login(hub.url, "erin", pw["erin"]).ok


def test_the_throttle_is_for_admins_only(hub):
    """Acceptance 4 (visible to admins): GET/DELETE /hub/api/carme/login-throttle need admin:users."""
    hub.ensure_user("alice")
    alice = {"Authorization": f"token {hub.user_token('alice')}"}
    assert requests.get(f"{hub.api}/carme/login-throttle", headers=alice, timeout=10).status_code == 403
    r = hub.session.delete(f"{hub.api}/carme/login-throttle", params={"kind": "group", "key": "x"})
    assert r.status_code == 400 and "kind must be 'user' or 'address'" in r.json()["message"]
    assert (
        hub.session.delete(f"{hub.api}/carme/login-throttle", params={"kind": "user", "key": "x"}).status_code
        == 404
    )
    for _ in range(5):
        form_login(hub.url, "dave", "wrong")
    assert (
        hub.session.delete(
            f"{hub.api}/carme/login-throttle", params={"kind": "user", "key": "dave"}
        ).status_code
        == 204
    )
    assert form_login(hub.url, "dave", ldap.passwords()["dave"]).ok
    wait_for_log(hub, "Login throttle: carme-tests ended the cool-down of user 'dave'")


def test_carol_loses_admin_at_her_next_login(hub):
    """Acceptance 5: carol in carme-admins is a hub admin; moved to carme-users in LDAP, her next
    login removes admin (and her group becomes `user`)."""
    pw = ldap.passwords()
    assert form_login(hub.url, "carol", pw["carol"]).ok
    model = user_model(hub, "carol")
    assert model["admin"] is True and model["groups"] == ["admin"] and model["auth_state"]["role"] == "admin"
    ldap.move_user("carol", "carme-admins", "carme-users")
    try:
        assert form_login(hub.url, "carol", pw["carol"]).ok
        model = user_model(hub, "carol")
        assert model["admin"] is False and model["groups"] == ["user"], model
        assert model["auth_state"]["role"] == "user" and model["auth_state"]["groups"] == ["carme-users"]
    finally:
        ldap.move_user("carol", "carme-users", "carme-admins")


def test_refresh_applies_a_role_change_within_the_refresh_age(hub):
    """Role changes apply without a new login once auth_refresh_age has passed; a user who lost
    every Carme group is sent back to the login form (which refuses them)."""
    result = form_login(hub.url, "erin", ldap.passwords()["erin"])
    assert result.ok and user_model(hub, "erin")["groups"] == ["user"]
    browser = result.session
    ldap.move_user("erin", "carme-users", "carme-power")
    try:
        time.sleep(REFRESH_AGE + 0.5)
        assert browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30).status_code == 200
        model = user_model(hub, "erin")
        assert model["groups"] == ["power"] and model["auth_state"]["role"] == "power", model
        ldap.modify(
            f"dn: cn=carme-power,{ldap.GROUPS}\nchangetype: modify\n"
            f"delete: member\nmember: uid=erin,{ldap.PEOPLE}\n"
        )
        time.sleep(REFRESH_AGE + 0.5)
        r = browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
        assert r.status_code == 302 and "/hub/login" in r.headers["Location"], (r.status_code, r.headers)
        assert "not in any group" in form_login(hub.url, "erin", ldap.passwords()["erin"]).error
    finally:
        ldap.script("reset")  # erin back in carme-users only


def test_logins_survive_a_slapd_restart_without_a_hub_restart(hub):
    """The service connection is re-opened after slapd went away; while it is down logins fail closed."""
    pw = ldap.passwords()
    assert form_login(hub.url, "alice", pw["alice"]).ok
    ldap.script("down")
    try:
        down = form_login(hub.url, "alice", pw["alice"])
        assert down.status == 503 and "cannot be reached" in down.error, down
    finally:
        ldap.script("up")
    assert form_login(hub.url, "alice", pw["alice"]).ok
    assert form_login(hub.url, "carol", pw["carol"]).ok


def test_no_password_in_any_log(hub):
    """Passwords (users', the service account's) appear in neither the hub's log nor slapd's."""
    secrets = list(ldap.passwords().values()) + [ldap.service_password()]
    hub_log = hub.log_path.read_text(errors="replace")
    slapd_log = ldap.LOG.read_text(errors="replace")
    assert "LDAP login of alice: role user" in hub_log  # the log is the one the tests wrote to
    leaked = [s[:4] + "..." for s in secrets if s in hub_log or s in slapd_log]
    assert not leaked, f"passwords in a log: {leaked}"
