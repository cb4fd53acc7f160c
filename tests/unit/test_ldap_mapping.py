"""Directory entries and groups -> Carme users and roles (pure: no server)."""

from __future__ import annotations

import pytest

from carme_auth.client import parse_server_url
from carme_auth.directory import DirectoryDataError, DirectorySettings, disabled_reason, user_from_entry
from carme_auth.roles import DEFAULT_ROLE_GROUPS, check_role_groups, role_for

SETTINGS = DirectorySettings(
    user_search_base="ou=people,dc=example,dc=org", group_search_base="ou=groups,dc=example,dc=org"
)
TODAY = 20000  # 2024-10-04 in days since 1970


def alice_attrs(**changes):
    attrs = {
        "uid": ["alice"],
        "uidnumber": ["10001"],
        "gidnumber": ["10000"],
        "homedirectory": ["/home/alice"],
    }
    attrs.update(changes)
    return attrs


@pytest.mark.parametrize(
    "groups, role",
    [
        (["carme-users"], "user"),
        (["carme-power"], "power"),
        (["carme-admins"], "admin"),
        (["carme-users", "carme-admins", "carme-power"], "admin"),
        (["carme-users", "carme-power"], "power"),
        (["CARME-Power"], "power"),
        (["staff", "carme-usersX"], None),
        ([], None),
    ],
)
def test_the_highest_mapped_group_gives_the_role(groups, role):
    assert role_for(groups, DEFAULT_ROLE_GROUPS) == role


def test_a_site_mapping_replaces_the_default():
    mapping = check_role_groups({"hpc-staff": "admin", "gpu-users": "user"})
    assert role_for(["gpu-users"], mapping) == "user"
    assert role_for(["carme-admins"], mapping) is None


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({}, "must map"),
        ({"carme-users": "king"}, "role_groups['carme-users']: role must be one of user, power, admin"),
        ({"": "user"}, "non-empty"),
        ("carme-users", "must map"),
    ],
)
def test_bad_mappings_are_refused_naming_the_entry(mapping, words):
    with pytest.raises(ValueError, match=None) as e:
        check_role_groups(mapping)
    assert words in str(e.value)
    assert "CarmeLDAPAuthenticator.role_groups" in str(e.value)


def test_an_entry_becomes_a_user_with_integer_ids():
    user = user_from_entry(
        ("uid=alice,ou=people,dc=example,dc=org", alice_attrs()), "alice", ("carme-users",), SETTINGS, TODAY
    )
    assert (user.username, user.uid, user.gid, user.home, user.groups, user.disabled) == (
        "alice",
        10001,
        10000,
        "/home/alice",
        ("carme-users",),
        None,
    )
    assert isinstance(user.uid, int) and isinstance(user.gid, int)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"uidnumber": []}, "uidNumber must have exactly one value"),
        ({"uidnumber": ["10001", "0"]}, "uidNumber must have exactly one value"),
        ({"uidnumber": ["-1"]}, "uidNumber must be a non-negative integer"),
        ({"gidnumber": ["ten"]}, "gidNumber must be a non-negative integer"),
        ({"homedirectory": ["home/alice"]}, "homeDirectory must be an absolute path"),
        ({"homedirectory": ["/home/../root"]}, "homeDirectory must be an absolute path"),
        ({"uid": ["mallory"]}, "uid does not hold 'alice'"),
    ],
)
def test_an_incomplete_entry_is_refused_naming_the_attribute(changes, words):
    with pytest.raises(DirectoryDataError, match=None) as e:
        user_from_entry(
            ("uid=alice,ou=people,dc=example,dc=org", alice_attrs(**changes)), "alice", (), SETTINGS, TODAY
        )
    assert words in str(e.value)


@pytest.mark.parametrize(
    "attrs, disabled",
    [
        ({}, None),
        ({"shadowexpire": ["-1"]}, None),
        ({"shadowexpire": [str(TODAY + 1)]}, None),
        ({"shadowexpire": [str(TODAY)]}, "expired on 2024-10-04"),
        ({"shadowexpire": ["1"]}, "expired on 1970-01-02"),
        ({"shadowexpire": ["soon"]}, "not a number"),
    ],
)
def test_shadow_expire_in_the_past_disables(attrs, disabled):
    reason = disabled_reason(attrs, SETTINGS, TODAY)
    assert (reason is None) if disabled is None else (disabled in reason)


def test_a_flag_attribute_can_disable_and_expiry_can_be_turned_off():
    settings = DirectorySettings(expiry_attribute="", disabled_attribute="nsAccountLock")
    assert disabled_reason({"shadowexpire": ["1"]}, settings, TODAY) is None
    assert "nsAccountLock=TRUE" in disabled_reason({"nsaccountlock": ["TRUE"]}, settings, TODAY)
    assert disabled_reason({"nsaccountlock": ["false"]}, settings, TODAY) is None


@pytest.mark.parametrize(
    "url, host, port, ldaps",
    [
        ("ldap://127.0.0.1:3389", "127.0.0.1", 3389, False),
        ("ldaps://ldap.example.org", "ldap.example.org", 636, True),
        ("ldap://ldap.example.org/", "ldap.example.org", 389, False),
    ],
)
def test_server_urls(url, host, port, ldaps):
    server = parse_server_url(url)
    assert (server.host, server.port, server.ldaps) == (host, port, ldaps)


@pytest.mark.parametrize(
    "url", ["http://x", "ldap://", "ldap://u:pw@x", "ldap://x/dc=org", "ldap://x:99999", "x:389"]
)
def test_bad_server_urls_are_refused_naming_the_setting(url):
    with pytest.raises(ValueError, match="CarmeLDAPAuthenticator.server_urls"):
        parse_server_url(url)
