"""Issue 20, acceptance 5, on the real hub, its carme-quota service and the STAND-IN beegfs-ctl (on the
services' PATH from /opt/carme/standins): with beegfs-ctl reporting alice over her quota, the usage
page and the spawn form say so; an admin's new disk limit reaches `beegfs-ctl --setquota` with
alice's uid and the values; a limit changed by hand on the file system is drift, left alone."""

from __future__ import annotations

import json
import pwd
import shutil
from pathlib import Path

import pytest

from .conftest import running_hub
from .test_catalog import login
from .waiting import wait_until

pytestmark = pytest.mark.integration

GIB = 1024**3
STATE = Path("/var/lib/carme-dev/standins/beegfs")  # the stand-in's default: the service passes no env
ADMIN = "custom:carme-quota:admin"
LIMITS = {"user": {"max_servers": 2, "gpus_per_job": 2, "disk_gib": 10, "disk_inodes": 100000}}


def calls() -> list[list[str]]:
    log = STATE / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def setquotas(uid: int) -> list[list[str]]:
    return [c for c in calls() if c[:3] == ["--setquota", "--uid", str(uid)]]


@pytest.fixture(scope="module")
def hub(cluster):
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    alice = pwd.getpwnam("alice").pw_uid
    # alice's files: 12 GiB under a 10 GiB limit that is already the policy's (nothing to set)
    (STATE / "quota.json").write_text(json.dumps({"user": {str(alice): {
        "size": 12 * GIB, "files": 1200, "sizelimit": 10 * GIB, "inodelimit": 100000}}}))
    env = {"CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
           "CARME__carme__quota": json.dumps({"url": "http://127.0.0.1:19904", "disk_backend": "beegfs",
                                              "overwrite_drift": False}),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    with running_hub(extra_env=env, ports=(19900, 19981, 19901), job_prefix="carme-disk-",
                     harness_scopes=(ADMIN, "custom:carme-quota:read", "access:services!service=carme-quota")) as hub:
        for user in ("alice", "bob"):
            hub.ensure_user(user)
        hub.quota = f"{hub.url}/services/carme-quota/api"
        hub.alice_uid = alice
        hub.sync_quota()
        yield hub
        hub.session.delete(f"{hub.quota}/users/alice/override")
        hub.session.post(f"{hub.quota}/sync", params={"overwrite_drift": 1})  # the example's policy in SLURM again
    shutil.rmtree(STATE, ignore_errors=True)


def disk_pass(hub) -> dict:
    r = hub.session.get(f"{hub.quota}/disk")
    assert r.status_code == 200, r.text
    return r.json()


def test_over_quota_shows_on_the_usage_page_and_the_form(hub):
    answer = disk_pass(hub)
    assert answer["pass"]["error"] is None and answer["backend"] == "beegfs", answer
    assert ["--getquota", "--uid", "--list"] == calls()[0][:3] and "--csv" in calls()[0]
    [alice] = [u for u in answer["usage"] if u["name"] == "alice"]
    assert (alice["used_bytes"], alice["limit_bytes"], alice["reached"]) == (12 * GIB, 10 * GIB, ["disk space"])
    assert setquotas(hub.alice_uid) == []  # the file system had the policy's limits already

    web = login(hub, "alice")
    page = web.get(f"{hub.url}/services/carme-quota/", timeout=20)
    assert page.status_code == 200, page.text[:300]
    assert 'data-disk-over="you"' in page.text
    assert "Disk quota: your disk space limit is reached on the global file system" in page.text
    assert "12.0 GiB of 10.0 GiB, 1,200 files of 100,000" in page.text
    form = web.get(f"{hub.url}/hub/spawn/alice", timeout=20).text
    assert "disk (global file system): 12.0 GiB of 10.0 GiB" in form
    assert "writes there may fail until files are deleted" in form

    bob = login(hub, "bob")
    assert "Disk quota:" not in bob.get(f"{hub.url}/hub/spawn/bob", timeout=20).text
    own = bob.get(f"{hub.url}/services/carme-quota/", timeout=20).text
    assert "data-disk-over" not in own and "10.0 GiB" in own  # bob got the role's limit set: 0 of 10 GiB


def test_an_admins_new_disk_limit_reaches_setquota_with_the_uid_and_values(hub):
    r = hub.session.put(f"{hub.quota}/users/alice/override", json={"disk_gib": 20, "disk_inodes": 250000})
    assert r.status_code == 200, r.text
    assert wait_until(lambda: setquotas(hub.alice_uid), 30)
    assert setquotas(hub.alice_uid)[-1] == ["--setquota", "--uid", str(hub.alice_uid), f"--sizelimit={20 * GIB}",
                                            "--inodelimit=250000", "--storagepoolid=1"]
    [alice] = [u for u in disk_pass(hub)["usage"] if u["name"] == "alice"]
    assert (alice["limit_bytes"], alice["limit_inodes"], alice["reached"]) == (20 * GIB, 250000, [])
    form = login(hub, "alice").get(f"{hub.url}/hub/spawn/alice", timeout=20).text
    assert "12.0 GiB of 20.0 GiB" in form and "Disk quota:" not in form
    r = hub.session.put(f"{hub.quota}/users/alice/override", json={"disk_gib": -5})
    assert r.status_code == 400 and "disk_gib" in r.json()["message"], r.text


def test_a_disk_limit_changed_by_hand_is_drift_and_left_alone(hub):
    state = json.loads((STATE / "quota.json").read_text())
    state["user"][str(hub.alice_uid)]["sizelimit"] = 3 * GIB  # an admin's beegfs-ctl --setquota by hand
    (STATE / "quota.json").write_text(json.dumps(state))
    before = len(setquotas(hub.alice_uid))
    r = hub.session.post(f"{hub.quota}/sync")
    assert r.status_code == 200, r.text
    changes = disk_pass(hub)["pass"]["changes"]
    assert [(c["name"], c["drift"], c["overwritten"]) for c in changes] == [("alice", True, False)], changes
    assert len(setquotas(hub.alice_uid)) == before
    assert json.loads((STATE / "quota.json").read_text())["user"][str(hub.alice_uid)]["sizelimit"] == 3 * GIB
