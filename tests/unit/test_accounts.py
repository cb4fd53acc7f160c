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
    account = resolve_account("alice", None, role="user", lookup=lookup)
    assert (account.username, account.uid, account.gid, account.home, account.role) == ("alice", 10001, 10000, "/home/alice", "user")


def test_auth_state_gives_home_and_gid_and_the_hub_gives_the_role():
    state = {"username": "alice", "uid": 10001, "gid": 10007, "home": "/data/home/alice", "role": "admin"}
    account = resolve_account("alice", state, role="power", lookup=lookup)
    assert (account.gid, account.home, account.role) == (10007, "/data/home/alice", "power")


def test_an_unknown_role_is_refused():
    with pytest.raises(AccountError, match="not one of"):
        resolve_account("alice", None, role="root", lookup=lookup)


@pytest.mark.parametrize(
    "hub_name, state, words",
    [
        ("alice", {"uid": 4242}, "uid 4242"),
        ("alice", {"uid": "10001; rm"}, "must be a number"),
        ("alice", {"uid": True}, "must be a number"),
        ("alice", {"uid": 10001, "home": "/home/../etc"}, "plain absolute path"),
        ("alice", {"uid": 10001, "home": "relative"}, "plain absolute path"),
        ("Alice$(id)", None, "not a valid POSIX user name"),
        ("mallory", None, "no POSIX account"),
        ("alice", {"username": "bob;x"}, "not a valid POSIX user name"),
    ],
)
def test_bad_or_disagreeing_identities_are_refused(hub_name, state, words):
    with pytest.raises(AccountError, match=words.replace("(", r"\(").replace("$", r"\$")):
        resolve_account(hub_name, state, role="user", lookup=lookup)


ROOT = pwd.struct_passwd(("root", "x", 0, 0, "", "/root", "/bin/bash"))
SYSTEM = pwd.struct_passwd(("backupd", "x", 998, 998, "", "/var/lib/backupd", "/bin/false"))


def system_lookup(name):
    return {"root": ROOT, "backupd": SYSTEM, "alice": ALICE}[name]


@pytest.mark.parametrize("name, words", [("root", "system account"), ("daemon", "system account"),
                                         ("backupd", "below the lowest uid")])
def test_no_job_runs_as_root_or_a_system_account(name, words):
    """Issue 16, finding 1: resolve_account("root", ...) gave uid 0."""
    with pytest.raises(AccountError, match=words):
        resolve_account(name, None, role="user", lookup=system_lookup)


def test_the_lowest_uid_and_the_deny_list_are_settings():
    assert resolve_account("backupd", None, role="user", lookup=system_lookup, min_uid=500).uid == 998
    with pytest.raises(AccountError, match="system account"):
        resolve_account("alice", None, role="user", lookup=lookup, denied_users=("alice",))


def test_a_trailing_newline_is_not_a_plain_value():
    """Issue 16, finding 7: `$` matches before a final newline; whole values are fullmatched."""
    with pytest.raises(AccountError, match="plain absolute path"):
        resolve_account("alice", {"uid": 10001, "home": "/home/alice\n"}, role="user", lookup=lookup)
    with pytest.raises(AccountError, match="not a valid POSIX user name"):
        resolve_account("alice\n", None, role="user", lookup=lookup)
