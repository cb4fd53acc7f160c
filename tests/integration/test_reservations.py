"""Issue 19, acceptance 4-6 and 8: GPUs booked ahead as real SLURM reservations.

alice books 2 a100 starting in 2 minutes through the API: SLURM has the reservation, for alice
only, on the node whose GPUs fit best. bob's spawn in it is refused by Carme before sbatch; alice's
spawn waits for it to begin and runs inside (scontrol show job names it). A booking beyond what is
left in the window is a 409 naming the windows that take the GPUs; one within capacity is booked.
A cancel deletes the SLURM reservation; one deleted by hand with scontrol is marked gone within
the sync interval. erin's role needs approval: her booking reaches SLURM only once an admin
approves it. The tests run in this file's order: the spawn in alice's booking comes last, while
the others use the two minutes before it begins."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

import icalendar
import pytest
import requests

from . import slurm_probe
from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration

PREFIX = "carme-itr"  # this module's SLURM reservation names: carme-itr<id>-<user>
SCOPES = ("custom:carme-reservations:admin", "custom:carme-reservations:read", "custom:carme-reservations:book",
          "access:services!service=carme-reservations", "custom:carme-slurm:read")
SYNC_INTERVAL = 3


@pytest.fixture(scope="module")
def hub(cluster):
    slurm_probe.delete_reservations(PREFIX)
    service = {"url": "http://127.0.0.1:19405", "sync_interval": SYNC_INTERVAL, "delay": 0.5, "name_prefix": PREFIX,
               "approval_roles": ["user"],
               "role_rules": {"user": {"max_hours": 8, "max_gpus": 4, "max_days_ahead": 14, "max_open": 3}}}
    env = {"CARME__carme__reservations": json.dumps(service), "CARME__SlurmView__reservation_interval": "2"}
    with running_hub(ports=(19400, 19481, 19401), job_prefix="carme-resv-", extra_env=env,
                     harness_scopes=SCOPES) as hub:
        for user in ("alice", "bob", "carol", "dave", "erin"):
            hub.ensure_user(user)
        # alice, carol and dave book without approval (role power); bob and erin are users
        r = hub.session.post(f"{hub.api}/groups/power", json={"users": ["alice", "carol", "dave"]})
        if r.status_code == 409:
            r = hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["alice", "carol", "dave"]})
        r.raise_for_status()
        hub.bookings = f"{hub.url}/services/carme-reservations/api"
        assert wait_until(lambda: hub.session.get(f"{hub.bookings}/sync").ok, 60), hub.log_tail()
        hub.users = {u: as_user(hub, u) for u in ("alice", "bob", "carol", "dave", "erin")}
        yield hub
    slurm_probe.delete_reservations(PREFIX)


def as_user(hub, user: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token(user)}"
    return session


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def soon(minutes: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=minutes)


def book(hub, user: str, start: datetime, end: datetime, gpus: int, gpu_type: str = "a100", **more) -> requests.Response:
    return hub.users[user].post(f"{hub.bookings}/bookings", json={"start": iso(start), "end": iso(end), "gpus": gpus,
                                                                  "gpu_type": gpu_type, **more})


def booking_state(hub, booking_id: int) -> str:
    return hub.session.get(f"{hub.bookings}/bookings/{booking_id}").json()["booking"]["state"]


STATE: dict = {}  # what the first test booked, for the last one


def test_alice_books_two_a100_in_two_minutes_and_slurm_reserves_them_for_her_only(hub):
    start = soon(2)
    STATE["start"], STATE["end"] = start, start + timedelta(minutes=30)
    r = book(hub, "alice", start, STATE["end"], 2, title="deadline run")
    assert r.status_code == 201, (r.text, hub.log_tail(120))
    booking = r.json()["booking"]
    assert booking["state"] == "approved" and booking["nodes"] == ["carme-n2"], booking  # the 2-a100 node fits best
    name = booking["reservation"]
    assert name == f"{PREFIX}{booking['id']}-alice"
    STATE["booking"], STATE["name"] = booking, name
    held = slurm_probe.reservation(name)
    assert held["Users"] == "alice" and held["Nodes"] == "carme-n2", held
    began = datetime.fromisoformat(held["StartTime"]).astimezone()  # slurmctld prints its host's local time
    assert abs((began - start).total_seconds()) < 1, (held["StartTime"], start)


def test_bob_may_not_spawn_in_alices_reservation(hub):
    name = STATE["name"]
    assert wait_until(lambda: any(r["name"] == name for r in hub.session.get(
        f"{hub.api}/carme/slurm/reservations").json()["reservations"]), 30)  # the hub's view has it
    r = hub.start_server("bob", {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "reservation": name})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"reservation: {name} is reserved for other users"), r.text
    assert not slurm_probe.carme_jobs(hub.job_prefix + "bob")


def test_others_see_a_booking_as_busy_only(hub):
    seen = hub.users["bob"].get(f"{hub.bookings}/bookings").json()["bookings"]
    alices = next(b for b in seen if b["id"] == STATE["booking"]["id"])
    assert alices["busy"] is True and "user" not in alices and "title" not in alices, alices
    mine = hub.users["alice"].get(f"{hub.bookings}/bookings").json()["bookings"]
    assert next(b for b in mine if b["id"] == STATE["booking"]["id"])["title"] == "deadline run"
    assert hub.users["bob"].get(f"{hub.bookings}/bookings/{STATE['booking']['id']}").status_code == 404


def test_an_overlap_beyond_capacity_is_a_409_naming_the_conflict_and_within_capacity_is_booked(hub):
    start, end = STATE["start"] + timedelta(minutes=10), STATE["end"] + timedelta(minutes=10)
    carol = book(hub, "carol", start, end, 4)
    assert carol.status_code == 201, carol.text  # carme-n1's 4 a100 are free then
    assert carol.json()["booking"]["nodes"] == ["carme-n1"]
    STATE["carol"] = carol.json()["booking"]
    dave = book(hub, "dave", start + timedelta(minutes=5), end, 1)
    assert dave.status_code == 409, dave.text
    refusal = dave.json()
    assert refusal["field"] == "start" and "1 a100 GPU: not free" in refusal["message"], refusal
    assert f"{STATE['start']:%Y-%m-%d %H:%M}–{STATE['end']:%H:%M} UTC on carme-n2" in refusal["message"], refusal
    assert {tuple(c["nodes"]) for c in refusal["conflicts"]} == {("carme-n1",), ("carme-n2",)}
    assert not [n for n in slurm_probe.reservations() if n.endswith("-dave")]


def test_bad_bookings_are_refused_naming_the_field(hub):
    alice, later = hub.users["alice"], soon(60)
    cases = [
        ({"start": iso(later), "end": iso(later - timedelta(hours=1)), "gpus": 1}, 400, "end"),
        ({"start": iso(soon(-90)), "end": iso(later), "gpus": 1}, 400, "start"),
        ({"start": "2027-03-28T02:30", "end": "2027-03-28T04:00", "timezone": "Europe/Berlin", "gpus": 1}, 400, "start"),
        ({"start": iso(later), "end": iso(later + timedelta(hours=1)), "gpus": 1, "gpu_type": "h100"}, 400, "gpu_type"),
        ({"start": iso(later), "end": iso(later + timedelta(hours=1)), "gpus": 11}, 400, "gpus"),  # 10 in all
    ]
    for body, status, field in cases:
        r = alice.post(f"{hub.bookings}/bookings", json=body)
        assert (r.status_code, r.json().get("field")) == (status, field), (body, r.text, hub.log_tail(80))
    too_long = book(hub, "bob", later, later + timedelta(hours=9), 1)  # role user: 8 h at most
    assert too_long.status_code == 403 and "at most 8 h" in too_long.json()["message"], too_long.text
    assert "does not exist in Europe/Berlin" in alice.post(f"{hub.bookings}/bookings", json=cases[2][0]).json()["message"]


def test_an_edit_moves_the_slurm_reservation_and_a_cancel_deletes_it(hub):
    carol, name = STATE["carol"], STATE["carol"]["reservation"]
    new_end = datetime.fromisoformat(carol["end"]) + timedelta(minutes=15)
    r = hub.users["carol"].patch(f"{hub.bookings}/bookings/{carol['id']}", json={"end": iso(new_end)})
    assert r.status_code == 200, r.text
    ends = datetime.fromisoformat(slurm_probe.reservation(name)["EndTime"]).astimezone()
    assert abs((ends - new_end).total_seconds()) < 1
    r = hub.users["carol"].delete(f"{hub.bookings}/bookings/{carol['id']}")
    assert r.status_code == 200 and r.json()["booking"]["state"] == "cancelled", r.text
    assert slurm_probe.reservation(name) == {}


def test_a_reservation_deleted_by_hand_is_marked_gone_within_the_sync_interval(hub):
    start = soon(120)
    r = book(hub, "dave", start, start + timedelta(hours=1), 1, gpu_type="1g.10gb")
    assert r.status_code == 201, r.text
    booking = r.json()["booking"]
    subprocess.run(["scontrol", "delete", f"ReservationName={booking['reservation']}"], check=True)
    deleted = time.monotonic()
    assert wait_until(lambda: booking_state(hub, booking["id"]) == "gone", 30)
    # the hub's view (every 2 s) and one sync (every 3 s): well within a generous bound
    assert time.monotonic() - deleted < 2 + SYNC_INTERVAL + 10


def test_a_carme_named_reservation_without_a_booking_is_reported(hub):
    stray = f"{PREFIX}9999-nobody"
    subprocess.run(["scontrol", "create", "reservation", f"ReservationName={stray}", "Users=root",
                    "StartTime=now+86400", "Duration=10", "Nodes=carme-n1"], check=True, capture_output=True)
    try:
        assert wait_until(lambda: stray in hub.session.get(f"{hub.bookings}/sync").json().get("unknown", []), 30)
        assert slurm_probe.reservation(stray)  # reported, left alone
    finally:
        subprocess.run(["scontrol", "delete", f"ReservationName={stray}"], check=False)


def test_erins_booking_waits_for_approval_and_only_then_slurm_has_it(hub):
    start = soon(180)
    r = book(hub, "erin", start, start + timedelta(hours=1), 1, gpu_type="1g.10gb")
    assert r.status_code == 201, r.text
    booking = r.json()["booking"]
    assert booking["state"] == "pending" and booking["reservation"] is None
    time.sleep(1)
    assert not [n for n in slurm_probe.reservations() if n.endswith("-erin")]
    assert hub.users["erin"].post(f"{hub.bookings}/bookings/{booking['id']}/decision",
                                  json={"approve": True}).status_code == 403
    r = hub.session.post(f"{hub.bookings}/bookings/{booking['id']}/decision", json={"approve": True, "note": "ok"})
    assert r.status_code == 200, r.text
    decided = r.json()["booking"]
    assert decided["state"] == "approved" and decided["decided_by"] == "carme-tests"
    assert slurm_probe.reservation(decided["reservation"])["Users"] == "erin"


def test_the_ics_feed_lists_alices_bookings_behind_her_token(hub):
    r = hub.users["alice"].post(f"{hub.bookings}/feed-token")
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    feed = requests.get(url, timeout=30)  # no login: calendar apps have the address only
    assert feed.status_code == 200 and feed.headers["Content-Type"].startswith("text/calendar"), feed.text
    events = icalendar.Calendar.from_ical(feed.text).walk("VEVENT")
    mine = [e for e in events if str(e["UID"]).startswith(f"booking-{STATE['booking']['id']}@")]
    assert mine and mine[0].decoded("DTSTART") == STATE["start"] and str(mine[0]["STATUS"]) == "CONFIRMED"
    assert requests.get(url.replace("token=", "token=x"), timeout=30).status_code == 404
    assert requests.get(url.replace("/alice.ics", "/bob.ics"), timeout=30).status_code == 404


def test_alices_spawn_waits_for_her_reservation_and_runs_inside_it(hub):
    name = STATE["name"]
    r = hub.start_server("alice", {"gpus": 2, "gpu_type": "a100", "image": "pytorch-gpu", "reservation": name})
    assert r.status_code in (201, 202), r.text
    job_id = hub.job_id("alice")
    job = slurm_probe.job(job_id)
    assert job["Reservation"] == name, job
    early = datetime.now(timezone.utc) < STATE["start"] - timedelta(seconds=5)
    if early:
        assert job["JobState"] == "PENDING" and job["Reason"] == "Reservation", job
    # SLURM ends a job with its reservation: the 1 h default is shortened to fit, and the spawn says so
    events = [e.get("message", "") for e in hub.progress_events(
        "alice", timeout=200, until=lambda e: "waiting for its reservation" in e.get("message", ""))]
    assert any(f"reservation {name} ends at" in m and "Runtime shortened" in m for m in events), events
    if early:
        assert any("waiting for its reservation to start" in m for m in events), events
    hub.wait_ready("alice", timeout=240)
    job = slurm_probe.job(job_id)
    assert job["JobState"] == "RUNNING" and job["Reservation"] == name and job["NodeList"] == "carme-n2", job
    started = datetime.fromisoformat(job["StartTime"]).astimezone()
    assert started >= STATE["start"] - timedelta(seconds=1)
    hours, minutes, _ = job["TimeLimit"].split(":")
    assert int(hours) == 0 and int(minutes) <= 30, job
    hub.stop_server("alice")
