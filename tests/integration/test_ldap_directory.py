"""carme_auth's client and directory against the real slapd of dev/ldap.sh (no hub).

Shows: both bind modes and both group schemas, LDAPS and StartTLS with the test CA, TLS failing
closed, escaping (acceptance 2, counted in slapd's own log), no unauthenticated bind, time-outs,
fail-over, and a service connection that survives a slapd restart.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from carme_auth.client import ConnectionSettings, DirectoryUnavailable, LDAPClient, parse_server_url
from carme_auth.directory import DirectorySettings, UserDirectory

from . import ldap_directory as ldap
from .ldap_directory import SlapdLog

pytestmark = pytest.mark.integration

INJECTIONS = ["*", "alice)(uid=*", "*)(|(uid=*", "admin\\00", "admin\x00", "*)(uid=admin", "ad*"]


@pytest.fixture(scope="module", autouse=True)
def slapd():
    ldap.script("up")


def client(*urls: str, **settings) -> LDAPClient:
    connection = ConnectionSettings(
        servers=tuple(parse_server_url(u) for u in urls or (ldap.LDAP_URL,)),
        ca_file=str(settings.pop("ca_file", ldap.CA_FILE)),
        **settings,
    )
    return LDAPClient(connection, ldap.SERVICE_DN, ldap.service_password)


def directory(conn: LDAPClient | None = None, **settings) -> UserDirectory:
    base = {"user_search_base": ldap.PEOPLE, "group_search_base": ldap.GROUPS}
    return UserDirectory(conn or client(), DirectorySettings(**{**base, **settings}))


def test_search_then_bind_reads_uid_gid_home_and_groups():
    pw = ldap.passwords()
    users = directory()
    alice = users.authenticate("alice", pw["alice"])
    assert (alice.dn, alice.uid, alice.gid, alice.home, alice.groups, alice.disabled) == (
        f"uid=alice,{ldap.PEOPLE}",
        10001,
        10000,
        "/home/alice",
        ("carme-users",),
        None,
    )
    assert users.authenticate("alice", pw["bob"]) is None
    assert users.authenticate("nobody", pw["alice"]) is None
    assert users.authenticate("carol", pw["carol"]).groups == ("carme-admins",)
    assert users.authenticate("bob", pw["bob"]).groups == ()
    assert "expired on 1970-01-02" in users.authenticate("frank", pw["frank"]).disabled


def test_direct_bind_with_posix_groups():
    pw = ldap.passwords()
    users = directory(
        bind_dn_template=f"uid={{username}},{ldap.PEOPLE}",
        group_search_base=ldap.POSIX_GROUPS,
        group_search_filter="(&(objectClass=posixGroup)(memberUid={username}))",
    )
    dave = users.authenticate("dave", pw["dave"])
    assert (dave.uid, dave.home, dave.groups) == (10004, "/home/dave", ("carme-power",))
    assert users.authenticate("dave", pw["erin"]) is None


def test_ldaps_with_the_test_ca_and_the_servers_name():
    assert (
        directory(client("ldaps://localhost:6636")).authenticate("erin", ldap.passwords()["erin"]).uid
        == 10005
    )


@pytest.mark.parametrize("url", [ldap.LDAP_URL, ldap.LDAPS_URL])
def test_an_unrelated_ca_fails_closed(url, tmp_path):
    other = ldap.make_unrelated_ca(tmp_path)
    with pytest.raises(DirectoryUnavailable) as e:
        directory(client(url, ca_file=other)).authenticate("alice", ldap.passwords()["alice"])
    assert "certificate verify failed" in str(e.value)
    assert f"CA file {other}" in str(e.value)


def test_the_dev_server_refuses_passwords_without_tls():
    with pytest.raises(DirectoryUnavailable, match="confidentialityRequired"):
        directory(client(starttls=False)).authenticate("alice", ldap.passwords()["alice"])


def test_escaping_keeps_injections_from_matching_more_than_one_entry():
    """Acceptance 2 at the directory level: even past the name check (a site with a loose
    username pattern), injected names match nothing, bind as nobody; slapd's log proves it."""
    pw = ldap.passwords()
    log = SlapdLog()
    users = directory()
    direct = directory(bind_dn_template=f"uid={{username}},{ldap.PEOPLE}")
    for name in INJECTIONS:
        for password in (pw["admin"], pw["alice"]):
            assert users.authenticate(name, password) is None, name
            assert direct.authenticate(name, password) is None, name
        assert users.lookup(name) is None, name
    time.sleep(0.3)  # slapd writes its log asynchronously
    results = log.search_results()
    assert len(results) >= 2 * len(INJECTIONS), log.text()[-2000:]
    assert max(results) == 0, f"a search matched entries: {results}"
    assert not [dn for dn in log.binds() if dn.startswith("uid=admin,") or dn.startswith("uid=alice,")]


def test_an_empty_password_is_never_sent():
    log = SlapdLog()
    assert directory().authenticate("alice", "") is None
    assert directory(bind_dn_template=f"uid={{username}},{ldap.PEOPLE}").authenticate("alice", "") is None
    time.sleep(0.3)
    assert f"uid=alice,{ldap.PEOPLE}" not in log.binds()


def test_fail_over_to_the_next_server():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    try:
        users = directory(client(f"ldap://127.0.0.1:{dead.getsockname()[1]}", ldap.LDAP_URL))
        assert users.authenticate("alice", ldap.passwords()["alice"]).uid == 10001
    finally:
        dead.close()


def test_a_silent_server_times_out():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    stop = threading.Event()
    held = []

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        users = directory(
            client(f"ldap://127.0.0.1:{silent.getsockname()[1]}", connect_timeout=1, receive_timeout=1)
        )
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            users.authenticate("alice", "whatever")
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()


def test_the_service_connection_survives_a_slapd_restart():
    conn = client()
    users = directory(conn)
    assert users.lookup("alice").uid == 10001
    ldap.script("down")
    try:
        with pytest.raises(DirectoryUnavailable):
            users.lookup("alice")
    finally:
        ldap.script("up")
    assert users.lookup("alice").uid == 10001  # no new client: the same one reconnected
    assert users.authenticate("erin", ldap.passwords()["erin"]).groups == ("carme-users",)
