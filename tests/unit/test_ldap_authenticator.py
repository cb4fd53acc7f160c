"""CarmeLDAPAuthenticator's decisions with a stand-in directory: what reaches the directory at
all, the auth model JupyterHub gets, messages, settings validation. (The real slapd is in
tests/integration/test_ldap_*.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web
from traitlets import TraitError

from carme_auth import CarmeLDAPAuthenticator
from carme_auth.client import DirectoryUnavailable
from carme_auth.directory import DirectoryUser

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "frank": "frank-pw"}
GROUPS = {"alice": ("carme-users",), "bob": (), "carol": ("carme-admins", "staff"), "frank": ("carme-users",)}


class FakeDirectory:
    def __init__(self):
        self.calls = []
        self.down = False

    def _user(self, name):
        return DirectoryUser(
            dn=f"uid={name},ou=people,dc=example,dc=org",
            username=name,
            uid=10000 + len(self.calls),
            gid=10000,
            home=f"/home/{name}",
            groups=GROUPS[name],
            disabled="the account expired" if name == "frank" else None,
        )

    def authenticate(self, username, password):
        self.calls.append(username)
        if self.down:
            raise DirectoryUnavailable("ldap://x: StartTLS: certificate verify failed")
        return self._user(username) if PASSWORDS.get(username) == password else None

    def lookup(self, username):
        self.calls.append(username)
        if self.down:
            raise DirectoryUnavailable("ldap://x: connection refused")
        return self._user(username) if username in PASSWORDS else None


def make(**settings):
    base = dict(
        server_urls=["ldap://127.0.0.1:3389"],
        bind_dn="cn=svc",
        user_search_base="ou=people",
        group_search_base="ou=groups",
        login_throttle_max_failures=3,
    )
    auth = CarmeLDAPAuthenticator(**{**base, **settings})
    auth.__dict__["directory"] = FakeDirectory()  # replaces the cached real one
    return auth


def form(username, password="x", ip="10.1.2.3"):
    return SimpleNamespace(request=SimpleNamespace(remote_ip=ip)), {
        "username": username,
        "password": password,
    }


async def test_a_user_with_a_role_gets_auth_state_admin_flag_and_group():
    auth = make()
    model = await auth.authenticate(*form("Alice ", "alice-pw"))
    assert model["name"] == "alice" and model["admin"] is False and model["groups"] == ["user"]
    state = model["auth_state"]
    assert set(state) == {"username", "uid", "gid", "home", "groups", "role"}
    assert (state["username"], state["home"], state["role"], state["groups"]) == (
        "alice",
        "/home/alice",
        "user",
        ["carme-users"],
    )
    assert isinstance(state["uid"], int) and isinstance(state["gid"], int)
    assert auth.check_allowed("alice", model)


async def test_admins_group_makes_a_hub_admin():
    model = await make().authenticate(*form("carol", "carol-pw"))
    assert model["admin"] is True and model["groups"] == ["admin"]
    assert model["auth_state"]["groups"] == ["carme-admins", "staff"]


@pytest.mark.parametrize("name", ["*", "alice)(uid=*", "*)(|(uid=*", "admin\\00", "admin\x00", "", "a" * 40])
async def test_injection_names_never_reach_the_directory(name):
    auth = make()
    assert await auth.authenticate(*form(name, "alice-pw")) is None
    assert auth.directory.calls == []


async def test_an_empty_password_never_reaches_the_directory():
    auth = make()
    assert await auth.authenticate(*form("alice", "")) is None
    assert auth.directory.calls == []


async def test_no_role_group_is_refused_with_a_message():
    with pytest.raises(web.HTTPError) as e:
        await make().authenticate(*form("bob", "bob-pw"))
    assert e.value.status_code == 403
    assert (
        "bob is not in any group that gives access to Carme (carme-admins, carme-power, carme-users)"
        in e.value.log_message
    )


async def test_a_disabled_account_is_refused():
    with pytest.raises(web.HTTPError) as e:
        await make().authenticate(*form("frank", "frank-pw"))
    assert e.value.status_code == 403 and "disabled" in e.value.log_message


async def test_an_unreachable_directory_fails_closed():
    auth = make()
    auth.directory.down = True
    with pytest.raises(web.HTTPError) as e:
        await auth.authenticate(*form("alice", "alice-pw"))
    assert e.value.status_code == 503 and "cannot be reached" in e.value.log_message


async def test_failures_lock_the_user_from_that_address_and_the_lock_skips_the_directory():
    auth = make()
    for _ in range(3):
        assert await auth.authenticate(*form("alice", "wrong")) is None
    calls = len(auth.directory.calls)
    with pytest.raises(web.HTTPError) as e:
        await auth.authenticate(*form("alice", "alice-pw"))
    assert e.value.status_code == 429 and "try again in" in e.value.log_message
    assert len(auth.directory.calls) == calls
    assert await auth.authenticate(*form("carol", "carol-pw"))  # others log in
    assert await auth.authenticate(*form("alice", "alice-pw", ip="10.9.9.9"))  # alice, from her own desk


async def test_refresh_follows_the_directory():
    auth = make()
    user = SimpleNamespace(name="carol")
    assert (await auth.refresh_user(user))["admin"] is True
    GROUPS["carol"] = ("carme-users",)
    try:
        model = await auth.refresh_user(user)
        assert model["admin"] is False and model["groups"] == ["user"]
    finally:
        GROUPS["carol"] = ("carme-admins", "staff")
    assert await auth.refresh_user(SimpleNamespace(name="bob")) is False  # no role: log in again
    assert await auth.refresh_user(SimpleNamespace(name="nobody")) is False


async def test_refresh_keeps_the_state_while_the_directory_is_down_and_without_service_account():
    auth = make()
    auth.directory.down = True
    assert await auth.refresh_user(SimpleNamespace(name="alice")) is True
    direct = make(bind_dn="", bind_dn_template="uid={username},ou=people")
    assert await direct.refresh_user(logged_in("alice")) is True
    assert direct.directory.calls == []


async def test_without_a_service_account_a_user_who_never_logged_in_through_the_directory_cannot_go_on():
    """Issue 16, finding 1: a hub user made through the REST API (root) has no directory login."""
    direct = make(bind_dn="", bind_dn_template="uid={username},ou=people")
    assert await direct.refresh_user(SimpleNamespace(name="root")) is False
    assert await direct.refresh_user(logged_in("root", state=None)) is False


def logged_in(name, state="default"):
    async def get_auth_state():
        return {"username": name, "uid": 10001, "gid": 10000, "home": f"/home/{name}"} if state == "default" else state

    return SimpleNamespace(name=name, get_auth_state=get_auth_state)


def test_jupyterhub_defaults_for_ldap():
    auth = make()
    assert auth.enable_auth_state and auth.manage_groups and auth.refresh_pre_spawn
    assert auth.validate_username("alice") and not auth.validate_username("Alice*")
    assert auth.normalize_username(" ALICE") == "alice"


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"server_urls": ["http://x"]}, "CarmeLDAPAuthenticator.server_urls"),
        ({"role_groups": {"carme-users": "root"}}, "CarmeLDAPAuthenticator.role_groups['carme-users']"),
        ({"connect_timeout": 0}, "CarmeLDAPAuthenticator.connect_timeout must be > 0"),
        ({"login_throttle_cooldown": -1}, "CarmeLDAPAuthenticator.login_throttle_cooldown must be >= 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings, words):
    with pytest.raises((TraitError, ValueError)) as e:
        CarmeLDAPAuthenticator(**settings)
    assert words in str(e.value)


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"server_urls": []}, "server_urls is empty"),
        ({"bind_dn": ""}, "set bind_dn and user_search_base"),
        ({"group_search_base": ""}, "group_search_base is empty"),
        ({"user_search_filter": "uid={username}"}, "user_search_filter must be an LDAP filter"),
        ({"bind_dn_template": "uid=x,ou=people"}, "bind_dn_template must contain {username}"),
    ],
)
def test_settings_that_depend_on_each_other_are_checked_at_hub_start(settings, words):
    base = {
        "server_urls": ["ldap://127.0.0.1:3389"],
        "bind_dn": "cn=svc",
        "user_search_base": "ou=people",
        "group_search_base": "ou=groups",
    }
    base.update(settings)
    with pytest.raises(ValueError, match=None) as e:
        CarmeLDAPAuthenticator(**base).check_allow_config()
    assert words in str(e.value)


def test_service_password_file_must_be_private(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    path.chmod(0o644)
    auth = make(bind_password_file=str(path))
    with pytest.raises(DirectoryUnavailable, match="readable by group or others"):
        auth._service_password()
    path.chmod(0o600)
    assert auth._service_password() == "s3cret"
