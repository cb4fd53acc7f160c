"""Disk quotas (issue 20): beegfs-ctl's argv and CSV, the plan's drift rule, the words, the disk pass
against the STAND-IN beegfs-ctl (run as a program), and the bounded directory scan."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
from pathlib import Path

import pytest

from carme_quota.disk import (
    GIB,
    DiskUse,
    disk_plan,
    getquota_argv,
    group_limits,
    over_words,
    parse_getquota_csv,
    setquota_argv,
    use_words,
)
from carme_quota.explain import disk_lines
from carme_quota.limits import Limits, LimitError, ProjectTemplate, effective_limits
from carme_services.quota.disk_pass import (
    BeegfsBackend,
    DirectoryBackend,
    keys_from_json,
    keys_to_json,
    run_disk_pass,
    scan,
    wanted_limits,
)
from carme_services.quota.pages import disk_rows

STANDIN = Path(__file__).resolve().parents[2] / "dev" / "standins" / "beegfs-ctl"
LOG = logging.getLogger("test")


def test_getquota_asks_one_list_per_kind_in_bytes_of_one_pool():
    assert getquota_argv("beegfs-ctl", "user", [1002, 1001, 1001]) == [
        "beegfs-ctl", "--getquota", "--uid", "--list", "1001,1002", "--csv", "--storagepoolid=1"]
    assert getquota_argv("/usr/bin/beegfs-ctl", "group", [5000], pool=2, mount="/beegfs")[-2:] == [
        "--storagepoolid=2", "--mount=/beegfs"]
    for bad in (dict(kind="users"), dict(ids=[]), dict(pool=0), dict(mount="beegfs"), dict(mount="/a/../b")):
        args = {"kind": "user", "ids": [1], **bad}
        with pytest.raises(ValueError):
            getquota_argv("beegfs-ctl", args.pop("kind"), args.pop("ids"), **args)


def test_setquota_sets_both_limits_and_none_is_unlimited():
    assert setquota_argv("beegfs-ctl", "user", 1001, (10 * GIB, 100_000)) == [
        "beegfs-ctl", "--setquota", "--uid", "1001", f"--sizelimit={10 * GIB}", "--inodelimit=100000",
        "--storagepoolid=1"]
    assert setquota_argv("beegfs-ctl", "group", 5000, (None, None))[2:6] == [
        "--gid", "5000", "--sizelimit=unlimited", "--inodelimit=unlimited"]
    for bad in ((0, 1), (1, -1), (1.5, 1), (True, 1)):
        with pytest.raises(ValueError, match="limit"):
            setquota_argv("beegfs-ctl", "user", 1, bad)


def test_getquota_csv_is_read_as_beegfs_prints_it():
    text = ("\nQuota information for storage pool Default (ID: 1):\n\nname,id,size,hard,files,hard\n"
            "alice,1001,13958643712,10737418240,12,unlimited\nbob,1002,0,unlimited,-,100\n"
            "carol,1003,5,0,7+,0\n")
    uses = parse_getquota_csv(text, "user")
    assert uses[("user", 1001)] == DiskUse("user", "alice", 1001, 13958643712, 10 * GIB, 12, None)
    assert uses[("user", 1002)] == DiskUse("user", "bob", 1002, 0, None, None, 100)
    carol = uses[("user", 1003)]
    assert (carol.limit_bytes, carol.used_inodes, carol.limit_inodes, carol.exact) == (None, 7, None, False)
    with pytest.raises(ValueError, match="not a quota row"):
        parse_getquota_csv("alice,1001,lots,1,1,1\n", "user")


def test_the_plan_sets_what_differs_and_reports_hand_made_changes():
    use = lambda limit: DiskUse("user", "alice", 1001, 0, limit, 0, 100)  # noqa: E731
    wanted = {("user", 1001): ("alice", (10 * GIB, 100))}
    assert disk_plan(wanted, {("user", 1001): use(10 * GIB)}, {}) == []  # already so
    [change] = disk_plan(wanted, {("user", 1001): use(None)}, {})  # never set by Carme: set
    assert (change.old, change.new, change.applies) == ((None, 100), (10 * GIB, 100), True)
    [change] = disk_plan(wanted, {}, {})  # not reported by the file system: set
    assert change.applies
    last = {("user", 1001): (5 * GIB, 100)}
    [change] = disk_plan(wanted, {("user", 1001): use(5 * GIB)}, last)  # the policy changed
    assert change.applies and not change.drift
    [change] = disk_plan(wanted, {("user", 1001): use(7 * GIB)}, last)  # changed by hand: drift
    assert (change.drift, change.applies) == (True, False)
    [change] = disk_plan(wanted, {("user", 1001): use(7 * GIB)}, last, overwrite_drift=True)
    assert (change.drift, change.overwritten, change.applies) == (True, True, True)
    unset = {("user", 1001): ("alice", (None, None))}
    assert disk_plan(unset, {("user", 1001): use(7 * GIB)}, {}) == []  # never Carme's: left alone
    [change] = disk_plan(unset, {("user", 1001): use(5 * GIB)}, {("user", 1001): (5 * GIB, 100)})
    assert change.new == (None, None) and change.applies  # Carme's limit, now unset: cleared


def test_the_words_say_the_use_and_why_writes_may_fail():
    over = DiskUse("user", "alice", 1001, 12 * GIB, 10 * GIB, 1200, 100_000)
    assert use_words(over) == "12.0 GiB of 10.0 GiB, 1,200 files of 100,000"
    assert "your disk space limit is reached" in over_words(over) and "writes there may fail" in over_words(over)
    group = DiskUse("group", "vision", 5000, 1, None, 10, 10)
    assert "project group vision's files limit is reached" in over_words(group)
    assert over_words(DiskUse("user", "bob", 1002, 1, 2, None, None)) == ""
    assert use_words(DiskUse("user", "bob", 1002, GIB, None, None, None, exact=False)) == "at least 1.0 GiB (no limit)"
    assert disk_lines([over])[0] == "disk (global file system): 12.0 GiB of 10.0 GiB, 1,200 files of 100,000"
    assert disk_lines([over])[1] == over_words(over)
    [row] = disk_rows({"disk": [over.to_dict()]})
    assert (row["what"], row["share"], row["over"]) == ("you", 100, over_words(over))


def test_disk_limits_compose_like_the_others_and_a_template_sets_its_groups():
    role = Limits(disk_gib=10, disk_inodes=1000)
    assert effective_limits(role, None, Limits(disk_gib=20)).disk_gib == 20
    project = ProjectTemplate(gpus_per_job=4, disk_gib=500, disk_inodes=10**6)
    assert effective_limits(role, project, None).disk_gib == 10  # a member's own quota, in a project job too
    assert group_limits(project) == (500 * GIB, 10**6)
    for bad in ({"disk_gib": -1}, {"disk_inodes": 1.5}, {"scratch_gib": "big"}):
        with pytest.raises(LimitError, match=next(iter(bad))):
            Limits.from_mapping(bad)


def test_wanted_limits_are_the_users_and_the_project_groups_with_ids_on_this_host():
    users = {"alice": "user", "ghost": "user", "carol": "power"}
    defaults = {"user": Limits(disk_gib=1), "power": Limits(disk_gib=2, disk_inodes=5)}
    ids = {"alice": 1001, "carol": 1003, "vision": 5000}
    wanted, missing = wanted_limits(users, defaults, {"alice": Limits(disk_inodes=9)},
                                    {"vision": (GIB, None), "nogroup": (1, 1)}, ids.get, ids.get)
    assert wanted == {("user", 1001): ("alice", (GIB, 9)), ("user", 1003): ("carol", (2 * GIB, 5)),
                      ("group", 5000): ("vision", (GIB, None))}
    assert missing == ["user ghost", "group of project nogroup"]
    assert keys_from_json(json.loads(json.dumps(keys_to_json({("user", 1001): (GIB, None)})))) == {
        ("user", 1001): (GIB, None)}


@pytest.fixture
def beegfs(tmp_path):
    """The STAND-IN beegfs-ctl, run as a program through a wrapper that gives it its own state dir."""
    wrapper = tmp_path / "beegfs-ctl"
    wrapper.write_text(f"#!/bin/sh\nCARME_STANDIN_BEEGFS_DIR={tmp_path / 'state'} exec {STANDIN} \"$@\"\n")
    wrapper.chmod(0o755)
    (tmp_path / "state").mkdir()
    return wrapper, tmp_path / "state"


def test_the_disk_pass_writes_the_policy_with_setquota_and_reads_the_use_back(beegfs):
    command, state = beegfs
    uid = os.getuid()
    name = pwd.getpwuid(uid).pw_name
    (state / "quota.json").write_text(json.dumps({"user": {str(uid): {"size": 12 * GIB, "files": 3,
                                                                      "sizelimit": 10 * GIB, "inodelimit": None}}}))
    backend = BeegfsBackend(str(command), 1, "")
    wanted = {("user", uid): (name, (20 * GIB, 1000)), ("group", 4242): ("vision", (GIB, None))}
    changes, reading, applied = asyncio.run(run_disk_pass(backend, wanted, {}, False, LOG))
    assert [(c.kind, c.id, c.new) for c in changes] == [("group", 4242, (GIB, None)), ("user", uid, (20 * GIB, 1000))]
    calls = [json.loads(line) for line in (state / "calls.log").read_text().splitlines()]
    assert ["--setquota", "--uid", str(uid), f"--sizelimit={20 * GIB}", "--inodelimit=1000",
            "--storagepoolid=1"] in calls
    assert reading[("user", uid)] == DiskUse("user", name, uid, 12 * GIB, 20 * GIB, 3, 1000,
                                             measured_at=reading[("user", uid)].measured_at)
    assert reading[("group", 4242)].name == "vision"  # Carme's name, not the group's
    assert applied == {("user", uid): (20 * GIB, 1000), ("group", 4242): (GIB, None)}
    again, _, _ = asyncio.run(run_disk_pass(backend, wanted, applied, False, LOG))
    assert again == []  # the file system matches


def test_the_standin_refuses_what_beegfs_ctl_refuses(beegfs):
    import subprocess

    command, _ = beegfs
    for argv, words in ((["--getquota", "--csv", "1"], "One of --uid or --gid is required"),
                        (["--setquota", "--uid", "1", "--sizelimit=1G"], "--sizelimit and --inodelimit are required"),
                        (["--setquota", "--uid", "1", "--sizelimit=lots", "--inodelimit=1"], "size limit is not valid"),
                        (["--getquota", "--uid", "1", "--storagepoolid=7"], "Storage pool ID doesn't exist"),
                        (["--getquota", "--uid", "1", "--bogus"], "Unknown argument")):
        r = subprocess.run([str(command), *argv], capture_output=True, text=True)
        assert r.returncode != 0 and words in r.stderr, (argv, r.stderr)


def test_the_directory_scan_is_bounded_and_says_when_it_stopped(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i}").write_bytes(b"x" * 5000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g").write_bytes(b"y")
    used, entries, exact = scan(tmp_path, 1000, float("inf"))
    assert (entries, exact) == (32, True) and used >= 30 * 4096
    assert scan(tmp_path, 10, float("inf"))[1:] == (10, False)
    assert scan(tmp_path / "missing", 10, float("inf")) == (0, 0, True)
    backend = DirectoryBackend(str(tmp_path / "{username}"), "", 1000, 5)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "big").write_bytes(b"z" * 9000)
    reading = asyncio.run(backend.read({("user", 1001): ("alice", (4096, None)), ("group", 5): ("p", (1, 1))}))
    assert set(reading) == {("user", 1001)}  # no project directory configured
    assert reading[("user", 1001)].reached() == ["disk space"]  # shown and warned; nothing enforces it


def test_carme_quota_show_prints_the_disk_reading():
    from carme_services.quota.client import report_text

    over = DiskUse("user", "alice", 1001, 12 * GIB, 10 * GIB, 1200, 100_000)
    usage = {"servers": 0, "started_today": 0, "gpu_hours_used": 0, "gpu_hours_held": 0}
    report = {"user": "alice", "role": "user", "account": "carme", "projects": [], "usage": usage,
              "limits": {"effective": {}, "role_default": {}, "override": {}}, "disk": [over.to_dict()]}
    assert "disk of you: 12.0 GiB of 10.0 GiB, 1,200 files of 100,000 (limit reached: disk space)" in report_text(report)
