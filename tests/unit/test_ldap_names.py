"""User names before the directory: normalization, validation, and escaping of every filter value."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carme_auth.names import (
    MAX_LENGTH,
    POSIX_USERNAME_PATTERN,
    UsernameError,
    checked_username,
    ldap_dn,
    ldap_filter,
    normalize_username,
    shorten,
)

INJECTIONS = ["*", "alice)(uid=*", "*)(|(uid=*", "admin\\00", "admin\x00", "alice*", "(uid=*)", "a\\2a"]


@pytest.mark.parametrize(
    "raw, name",
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("  ALICE \t", "alice"),
        ("ａｌｉｃｅ", "alice"),
        ("erin.k-2", "erin.k-2"),
    ],
)
def test_names_are_normalized(raw, name):
    assert normalize_username(raw) == name
    assert checked_username(raw, POSIX_USERNAME_PATTERN) == name


@pytest.mark.parametrize(
    "raw", INJECTIONS + ["", "   ", "9lives", "-rf", "a/b", "../etc", "a b", "é", "a" * 33]
)
def test_injections_and_non_posix_names_are_refused_before_any_lookup(raw):
    with pytest.raises(UsernameError):
        checked_username(raw, POSIX_USERNAME_PATTERN)


def test_overlong_names_are_refused_whatever_the_pattern():
    with pytest.raises(UsernameError, match=str(MAX_LENGTH)):
        checked_username("a" * (MAX_LENGTH + 1), ".*")


def test_the_error_does_not_carry_a_long_or_raw_name():
    with pytest.raises(UsernameError) as e:
        checked_username("x" * 100 + "\n(uid=*)", POSIX_USERNAME_PATTERN)
    assert "\n" not in str(e.value) and len(str(e.value)) < 120


@pytest.mark.parametrize(
    "value, escaped",
    [
        ("*", r"\2a"),
        ("alice)(uid=*", r"alice\29\28uid=\2a"),
        ("*)(|(uid=*", r"\2a\29\28|\28uid=\2a"),
        ("admin\\00", r"admin\5c00"),
        ("admin\x00", r"admin\00"),
    ],
)
def test_filter_values_are_escaped(value, escaped):
    assert ldap_filter("(uid={username})", username=value) == f"(uid={escaped})"


@given(st.text())
def test_no_value_can_add_filter_syntax(value):
    """Whatever the value, the filter keeps exactly the template's parentheses and no wildcard."""
    result = ldap_filter("(&(objectClass=posixAccount)(uid={username}))", username=value)
    inner = result[len("(&(objectClass=posixAccount)(uid=") : -2]
    unescaped = re.sub(r"\\[0-9a-f]{2}", "", inner)
    assert not set(unescaped) & set("*()\\\x00"), result
    assert result.count("(") - inner.count("(") == 3


def test_group_filter_escapes_both_placeholders():
    result = ldap_filter("(|(member={user_dn})(memberUid={username}))", user_dn="uid=a*,ou=x", username="a)(")
    assert result == r"(|(member=uid=a\2a,ou=x)(memberUid=a\29\28))"


@pytest.mark.parametrize(
    "name, dn",
    [
        ("alice", "uid=alice,ou=people,dc=example,dc=org"),
        ("alice,ou=admins", r"uid=alice\,ou\=admins,ou=people,dc=example,dc=org"),
        ("a+cn=b", r"uid=a\+cn\=b,ou=people,dc=example,dc=org"),
    ],
)
def test_direct_bind_dn_cannot_name_another_entry(name, dn):
    assert ldap_dn("uid={username},ou=people,dc=example,dc=org", name) == dn


def test_shorten_quotes_and_cuts():
    assert shorten("a\nb") == "'a\\nb'"
    assert len(shorten("x" * 100)) == 40


def test_nul_is_escaped_in_a_dn():
    assert ldap_dn("uid={username},ou=people", "admin\x00") == r"uid=admin\00,ou=people"
