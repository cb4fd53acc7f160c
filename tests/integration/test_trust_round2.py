"""Issue 16 against a real hub, the real configurable-http-proxy, slapd and SLURM:

- finding 1: no job as root or a system account; a hub user with no directory entry cannot spawn
  under LDAP, in either bind mode (nothing reaches SLURM);
- finding 2: address headers a client makes up (X-Real-Ip, X-Forwarded-For) do not move its
  failures to other addresses, and a cool-down survives a hub restart.
"""

from __future__ import annotations

import pytest

from . import ldap_directory as ldap
from . import slurm_probe
from .ldap_directory import form_login

pytestmark = pytest.mark.integration

INVALID = "Invalid username or password"


def no_job_for(hub, user: str) -> bool:
    return slurm_probe.carme_jobs(f"{hub.job_prefix}{user}") == []


def test_root_and_system_accounts_get_no_job(hub):
    """The dummy hub (any name logs in with the shared password): root and daemon are refused (403,
    with the reason), and SLURM sees nothing."""
    for name in ("root", "daemon"):
        hub.ensure_user(name)
        r = hub.start_server(name, {"gpus": 0, "image": "python-cpu"})
        assert r.status_code == 403, (name, r.text)
        assert "system account" in r.json()["message"], r.text
        assert no_job_for(hub, name)
        assert not (hub.server_model(name) or {}).get("pending")


@pytest.fixture(scope="module")
def ldap_hub(cluster):
    ldap.script("up")
    with ldap.ldap_hub() as hub:
        yield hub


def test_a_hub_user_without_a_directory_entry_cannot_spawn_search_then_bind(ldap_hub):
    for name in ("root", "mallory"):
        ldap_hub.ensure_user(name)  # made by an admin through the REST API, never logged in
        r = ldap_hub.start_server(name, {"gpus": 0, "image": "python-cpu"})
        assert r.status_code == 403, (name, r.text)
        assert no_job_for(ldap_hub, name)


def test_spoofed_address_headers_through_the_real_proxy_are_ignored_and_the_lock_survives_a_restart(ldap_hub):
    pw = ldap.passwords()
    ldap_hub.extra_env["CARME__CarmeLDAPAuthenticator__login_throttle_cooldown"] = "300"  # outlasts a restart
    ldap_hub.restart()
    ldap.release_throttle(ldap_hub)
    results = [
        form_login(ldap_hub.url, "erin", f"wrong-{i}",
                   headers={"X-Real-Ip": f"198.51.100.{i}", "X-Forwarded-For": f"203.0.113.{i}"})
        for i in range(12)
    ]
    assert [r.error for r in results[:5]] == [INVALID] * 5, results
    assert all(r.status == 429 for r in results[5:]), results  # the rotating headers changed nothing
    locked = ldap_hub.session.get(f"{ldap_hub.api}/carme/login-throttle").json()["locked"]
    assert [(x["kind"], x["key"], x["address"]) for x in locked] == [("user", "erin", "127.0.0.1")], locked

    ldap_hub.restart()
    refused = form_login(ldap_hub.url, "erin", pw["erin"])
    assert refused.status == 429, refused  # the hub's database kept the cool-down
    ldap.release_throttle(ldap_hub)
    assert form_login(ldap_hub.url, "erin", pw["erin"]).ok


def test_a_hub_user_without_a_directory_entry_cannot_spawn_direct_bind(cluster):
    env = {"CARME__CarmeLDAPAuthenticator__bind_dn": '""',
           "CARME__CarmeLDAPAuthenticator__bind_dn_template": f"uid={{username}},{ldap.PEOPLE}"}
    with ldap.ldap_hub(extra_env=env) as hub:
        assert form_login(hub.url, "alice", ldap.passwords()["alice"]).ok  # direct bind works
        hub.ensure_user("root")
        r = hub.start_server("root", {"gpus": 0, "image": "python-cpu"})
        assert r.status_code == 403, r.text
        assert no_job_for(hub, "root")


def test_users_cannot_read_each_others_jobs_while_the_hubs_watch_sees_all(cluster):
    """README, "Accounting without leaks": PrivateData=jobs,usage,accounts on the dev cluster."""
    import subprocess

    bob = subprocess.run(["runuser", "-u", "bob", "--", "sbatch", "--parsable", "-J", "private-check", "-p",
                          "interactive", "-t", "2", "-o", "/dev/null", "--wrap", "sleep 60"],
                         capture_output=True, text=True, check=True, cwd="/tmp").stdout.strip()
    try:
        as_alice = subprocess.run(["runuser", "-u", "alice", "--", "squeue", "-h", "-o", "%i"], capture_output=True,
                                  text=True, cwd="/tmp").stdout.split()
        assert bob not in as_alice
        shown = subprocess.run(["runuser", "-u", "alice", "--", "scontrol", "show", "job", bob], capture_output=True,
                               text=True, cwd="/tmp")
        assert "private-check" not in shown.stdout
        import json

        as_root = json.loads(subprocess.run(["squeue", "--all", "--json"], capture_output=True, text=True,
                                            check=True).stdout)  # what the hub's watch runs
        assert bob in {str(j["job_id"]) for j in as_root["jobs"]}
    finally:
        subprocess.run(["scancel", bob], check=False)
