"""Reservations from `scontrol [-o] show reservation` (22.05) and its JSON (23.02+)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carme_slurm.reservations import (
    SlurmReservation,
    parse_reservations_json,
    parse_reservations_text,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"
UTC = timezone.utc


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def epoch(text: str, tz=UTC) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=tz).timestamp())


# ---- text (22.05) ----------------------------------------------------------------------------------


def test_one_line_per_reservation():
    [r] = parse_reservations_text(fixture("scontrol-show-reservation-22.05.txt"), tz=UTC)  # captured in UTC
    assert r == SlurmReservation(
        name="fixture-res", state="INACTIVE", start_time=epoch("2026-12-02T21:24:24"),
        end_time=epoch("2026-12-02T22:24:24"), nodes="carme-n2", node_count=1, partition="",
        users=("alice", "bob"), accounts=(), flags=("IGNORE_JOBS", "SPEC_NODES"), tres={"cpu": 8})
    assert r.end_time - r.start_time == 3600 and not r.active


def test_excluded_user_flags_and_hostlist():
    res, maint = parse_reservations_text(fixture("scontrol-show-reservation-22.05-two.txt"), tz=UTC)
    assert res.name == "fixture-res"
    assert (maint.name, maint.nodes, maint.node_count, maint.tres) == ("fixture-maint", "carme-n[1-2]", 2, {"cpu": 16})
    assert maint.users == ("-alice",)  # as SLURM prints it: everyone but alice
    assert maint.flags == ("MAINT", "IGNORE_JOBS", "SPEC_NODES", "ALL_NODES")
    assert maint.end_time - maint.start_time == 86400


def test_multi_line_form():
    [r] = parse_reservations_text(fixture("scontrol-show-reservation-22.05-multiline.txt"), tz=UTC)
    assert (r.name, r.start_time, r.nodes, r.users, r.state, r.tres) == (
        "fixture-res", epoch("2026-12-02T21:31:15"), "carme-n2", ("alice", "bob"), "INACTIVE", {"cpu": 8})


@pytest.mark.parametrize("text", [fixture("scontrol-show-reservation-22.05-none.txt"), "", "\n\n"])
def test_no_reservations(text):
    assert parse_reservations_text(text) == []


def test_times_are_local_unless_a_zone_is_given():
    text = fixture("scontrol-show-reservation-22.05.txt")
    [local] = parse_reservations_text(text)
    assert local.start_time == int(datetime(2026, 12, 2, 21, 24, 24).timestamp())  # this process's local time
    [plus_one] = parse_reservations_text(text, tz=timezone(timedelta(hours=1)))
    assert plus_one.start_time == epoch("2026-12-02T21:24:24") - 3600


def test_active_reservation_with_accounts_and_partition():
    line = ("ReservationName=course StartTime=2026-12-01T08:00:00 EndTime=2026-12-01T18:00:00 Duration=10:00:00 "
            "Nodes=carme-n[1-2] NodeCnt=2 CoreCnt=16 Features=(null) PartitionName=interactive Flags=DAILY "
            "TRES=cpu=16 Users=(null) Groups=(null) Accounts=ml-course,-guests Licenses=(null) State=ACTIVE "
            "BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)\n")
    [r] = parse_reservations_text(line, tz=UTC)
    assert (r.state, r.active, r.partition, r.users, r.accounts, r.flags) == (
        "ACTIVE", True, "interactive", (), ("ml-course", "-guests"), ("DAILY",))


def test_to_dict_is_json_ready_and_reservations_hash():
    [r] = parse_reservations_text(fixture("scontrol-show-reservation-22.05.txt"), tz=UTC)
    d = json.loads(json.dumps(r.to_dict()))
    assert d == {"name": "fixture-res", "state": "INACTIVE", "start_time": r.start_time, "end_time": r.end_time,
                 "nodes": "carme-n2", "node_count": 1, "partition": "", "users": ["alice", "bob"], "accounts": [],
                 "flags": ["IGNORE_JOBS", "SPEC_NODES"], "tres": {"cpu": 8}}
    assert len({r, r}) == 1


@pytest.mark.parametrize("text", [
    "slurm_load_reservations error: Unable to contact slurm controller (connect failure)",
    "ReservationName=x StartTime=2026-12-01T08:00:00 EndTime=2026-12-01T18:00:00 State=MAYBE",
    "ReservationName=x StartTime=12/01-08:00 EndTime=2026-12-01T18:00:00 State=ACTIVE",  # SLURM_TIME_FORMAT
    "ReservationName=x StartTime=2026-12-01T08:00:00 NodeCnt=two State=ACTIVE",
    "ReservationName=x TRES=cpu=lots State=ACTIVE",
    "No reservations in the system\nReservationName=x State=ACTIVE\nNo reservations in the system",
])
def test_garbled_text_raises_value_error(text):
    with pytest.raises(ValueError):
        parse_reservations_text(text)


@given(st.text())
def test_any_text_parses_or_raises_value_error(text):
    try:
        parse_reservations_text(text, tz=UTC)
    except ValueError:
        pass


# ---- JSON (23.02+) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scontrol-show-reservation-23.02-v0.0.39-constructed.json",
                                  "scontrol-show-reservation-24.05-v0.0.41-constructed.json"])
def test_json_matches_the_text(name):
    expected = parse_reservations_text(fixture("scontrol-show-reservation-22.05-two.txt"), tz=UTC)
    assert parse_reservations_json(fixture(name), now=0) == expected  # both INACTIVE at epoch 0


def test_json_state_is_computed_like_scontrol():
    text = fixture("scontrol-show-reservation-24.05-v0.0.41-constructed.json")
    res = parse_reservations_json(text, now=epoch("2026-12-02T21:30:00"))[0]
    assert res.state == "ACTIVE"
    assert parse_reservations_json(text, now=res.end_time)[0].state == "ACTIVE"  # end inclusive, as scontrol
    assert parse_reservations_json(text, now=res.end_time + 1)[0].state == "INACTIVE"
    assert parse_reservations_json(text)[0].state in ("ACTIVE", "INACTIVE")  # now = the clock


def test_json_unset_and_infinite_times_are_zero():
    d = json.loads(fixture("scontrol-show-reservation-24.05-v0.0.41-constructed.json"))
    d["reservations"][0]["start_time"] = {"set": False, "infinite": False, "number": 5}
    d["reservations"][0]["end_time"] = {"set": False, "infinite": True, "number": 0}
    r = parse_reservations_json(json.dumps(d), now=10)[0]
    assert (r.start_time, r.end_time, r.state) == (0, 0, "INACTIVE")


def test_json_errors_raise():
    d = json.loads(fixture("scontrol-show-reservation-24.05-v0.0.41-constructed.json"))
    d["errors"] = [{"description": "Unable to query reservations", "error_number": 1}]
    with pytest.raises(ValueError, match="Unable to query reservations"):
        parse_reservations_json(json.dumps(d))


@pytest.mark.parametrize("text", [
    '{"errors": []}', '{"reservations": {}}', "[]", "not json", '{"reservations": [{"node_list": "a"}]}',
    '{"reservations": [{"name": "r", "start_time": "soon"}]}', '{"reservations": [{"name": "r", "node_count": "2"}]}',
    '{"reservations": [{"name": "r", "users": 3}]}',
])
def test_malformed_json_raises_value_error(text):
    with pytest.raises(ValueError):
        parse_reservations_json(text, now=0)


def test_json_without_reservations():
    assert parse_reservations_json('{"reservations": [], "errors": [], "warnings": []}') == []
