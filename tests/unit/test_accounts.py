"""Who a job runs as: auth_state and the host's accounts must agree."""

from __future__ import annotations

import pwd

import pytest

from carme_spawner.accounts import AccountError, resolve_account

ALICE = pwd.struct_passwd(("alice", "x", 10001, 10000, "", "/home/alice", "/bin/bash"))


def lookup(name):
    if name == "alice":
        return ALICE
    raise KeyError(name)


def test_without_auth_state_the_host_account_is_used():
    account = resolve_account("alice", None, is_admin=False, lookup=lookup)
    assert (account.username, account.uid, account.gid, account.home, account.role) == ("alice", 10001, 10000, "/home/alice", "user")


def test_auth_state_gives_home_gid_and_role():
    state = {"username": "alice", "uid": 10001, "gid": 10007, "home": "/data/home/alice", "role": "power"}
    account = resolve_account("alice", state, is_admin=False, lookup=lookup)
    assert (account.gid, account.home, account.role) == (10007, "/data/home/alice", "power")


def test_admins_are_admins_whatever_the_state_says():
    assert resolve_account("alice", {"role": "user"}, is_admin=True, lookup=lookup).role == "admin"


@pytest.mark.parametrize(
    "hub_name, state, words",
    [
        ("alice", {"uid": 4242}, "uid 4242"),
        ("alice", {"uid": "10001; rm"}, "must be a number"),
        ("alice", {"uid": True}, "must be a number"),
        ("alice", {"uid": 10001, "home": "/home/../etc"}, "plain absolute path"),
        ("alice", {"uid": 10001, "home": "relative"}, "plain absolute path"),
        ("alice", {"role": "root"}, "not one of"),
        ("Alice$(id)", None, "not a valid POSIX user name"),
        ("mallory", None, "no POSIX account"),
        ("alice", {"username": "bob;x"}, "not a valid POSIX user name"),
    ],
)
def test_bad_or_disagreeing_identities_are_refused(hub_name, state, words):
    with pytest.raises(AccountError, match=words.replace("(", r"\(").replace("$", r"\$")):
        resolve_account(hub_name, state, is_admin=False, lookup=lookup)
