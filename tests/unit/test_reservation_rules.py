"""Issue 19, part 3: a booking's checks (pure): times and DST, fields, role rules, capacity, the
scontrol argv, hostlists, the sync's plan, the .ics feed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import icalendar
import pytest

from carme_services.reservations.booking import BookingError, BookingRequest, RoleRules, parse_booking, parse_time, rules_refusal
from carme_services.reservations.capacity import CapacityConflict, Hold, NodeGpus, job_holds, nodes_from_view, place, reservation_holds
from carme_services.reservations.ics import calendar
from carme_services.reservations.slurm_sync import carme_named, slurm_name, sync_plan
from carme_services.reservations.store import Booking
from carme_slurm.hostlist import expand_hostlist
from carme_slurm.reservation_argv import ReservationSpec, create_reservation_argv, delete_reservation_argv, update_reservation_argv
from carme_slurm.reservations import parse_reservations_text

NOW = datetime(2027, 3, 20, 10, 0, tzinfo=timezone.utc)
TYPES = {"a100", "1g.10gb"}
PARTS = {"interactive", "batch"}


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def book(**body):
    body = {"start": at(1).isoformat(), "end": at(3).isoformat(), "gpus": 2, **body}
    return parse_booking(body, NOW, TYPES, PARTS)


# ---- times --------------------------------------------------------------------------------------

def test_a_time_with_an_offset_is_that_instant_and_utc_inside():
    assert parse_time("start", "2027-03-28T14:00+02:00") == datetime(2027, 3, 28, 12, 0, tzinfo=timezone.utc)
    assert parse_time("start", "2027-03-28T12:00Z") == datetime(2027, 3, 28, 12, 0, tzinfo=timezone.utc)


def test_a_local_time_is_read_in_the_given_zone():
    assert parse_time("start", "2027-07-01T14:00", "Europe/Berlin") == datetime(2027, 7, 1, 12, tzinfo=timezone.utc)


def test_a_time_in_the_spring_gap_is_refused_naming_the_field():
    with pytest.raises(BookingError) as e:
        parse_time("start", "2027-03-28T02:30", "Europe/Berlin")
    assert e.value.field == "start" and "does not exist in Europe/Berlin" in str(e.value)


def test_a_time_repeated_in_autumn_is_refused_with_the_offset_to_give():
    with pytest.raises(BookingError) as e:
        parse_time("end", "2027-10-31T02:30", "Europe/Berlin")
    assert e.value.field == "end" and "happens twice" in str(e.value) and "+02:00" in str(e.value)


@pytest.mark.parametrize("value", ["", "tomorrow", "2027-13-01T00:00", 5, None])
def test_a_time_that_is_not_iso_is_refused(value):
    with pytest.raises(BookingError) as e:
        parse_time("start", value)
    assert e.value.field == "start" and e.value.status == 400


def test_an_unknown_zone_is_refused_naming_timezone():
    with pytest.raises(BookingError) as e:
        book(timezone="Mars/Olympus")
    assert e.value.field == "timezone"


# ---- the request ----------------------------------------------------------------------------------

def test_a_good_request():
    r = book(gpu_type="a100", partition="interactive", title="deadline")
    assert (r.start, r.end, r.gpus, r.gpu_type, r.partition, r.title) == (at(1), at(3), 2, "a100", "interactive", "deadline")
    assert r.gpu_hours == 4


@pytest.mark.parametrize("body, field, words", [
    ({"end": at(0.5).isoformat()}, "end", "after the start"),
    ({"start": at(-2).isoformat(), "end": at(1).isoformat()}, "start", "in the past"),
    ({"gpus": 0}, "gpus", "at least 1"),
    ({"gpus": "two"}, "gpus", "whole number"),
    ({"gpus": True}, "gpus", "whole number"),
    ({"gpu_type": "h100"}, "gpu_type", "not a GPU type of this cluster"),
    ({"gpu_type": "a100;rm"}, "gpu_type", "GPU type name"),
    ({"partition": "gpu"}, "partition", "not a partition"),
    ({"title": "x" * 121}, "title", "120"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_bad_input_is_a_400_naming_the_field(body, field, words):
    with pytest.raises(BookingError) as e:
        book(**body)
    assert (e.value.field, e.value.status) == (field, 400)
    assert words in str(e.value)


def test_a_start_a_moment_ago_is_now():
    r = book(start=(NOW - timedelta(seconds=30)).isoformat())
    assert r.start == NOW


def test_an_edit_keeps_fields_it_leaves_out_and_may_keep_a_start_that_passed():
    base = BookingRequest(at(-1), at(2), 2, "a100", "", "x")
    edited = parse_booking({"end": at(4).isoformat()}, NOW, TYPES, PARTS, base=base)
    assert (edited.start, edited.end, edited.gpus, edited.gpu_type) == (at(-1), at(4), 2, "a100")


def test_role_rules():
    rules = RoleRules(max_hours=8, max_gpus=4, max_days_ahead=14, max_open=2)
    assert rules_refusal(book(), rules, "user", 0, NOW) is None
    assert rules_refusal(book(end=at(10).isoformat()), rules, "user", 0, NOW).field == "end"
    assert rules_refusal(book(gpus=5), rules, "user", 0, NOW).field == "gpus"
    far = book(start=at(24 * 20).isoformat(), end=at(24 * 20 + 1).isoformat())
    assert "14 days ahead" in str(rules_refusal(far, rules, "user", 0, NOW))
    refusal = rules_refusal(book(), rules, "user", 2, NOW)
    assert refusal.status == 403 and "2 at once" in str(refusal)
    assert rules_refusal(book(gpus=99, end=at(99).isoformat()), RoleRules(), "admin", 50, NOW) is None


def test_role_rules_from_settings_refuse_nonsense():
    assert RoleRules.from_mapping("user", {"max_hours": 2.5, "max_open": None}) == RoleRules(max_hours=2.5)
    for bad in ({"max_gpus": 1.5}, {"max_hours": -1}, {"max_length": 3}, {"max_open": True}):
        with pytest.raises(ValueError, match="role_rules.user"):
            RoleRules.from_mapping("user", bad)


# ---- capacity -----------------------------------------------------------------------------------

N1 = NodeGpus("carme-n1", ("interactive", "batch"), {"a100": 4})
N2 = NodeGpus("carme-n2", ("interactive", "batch"), {"a100": 2, "1g.10gb": 4})


def test_the_smallest_node_that_fits_is_taken():
    assert place(book(gpu_type="a100"), [N1, N2], []) == ("carme-n2",)
    assert place(book(gpus=3, gpu_type="a100"), [N1, N2], []) == ("carme-n1",)
    assert place(book(gpus=1, gpu_type="1g.10gb"), [N1, N2], []) == ("carme-n2",)


def test_more_than_one_node_has_takes_several():
    assert place(book(gpus=6, gpu_type="a100"), [N1, N2], []) == ("carme-n1", "carme-n2")


def test_more_than_the_cluster_has_is_a_400():
    with pytest.raises(BookingError) as e:
        place(book(gpus=7, gpu_type="a100"), [N1, N2], [])
    assert (e.value.field, e.value.status) == ("gpus", 400) and "6 in all" in str(e.value)


def test_an_overlapping_hold_beyond_capacity_is_a_409_naming_the_window():
    holds = [Hold(at(0), at(2), ("carme-n2",), "a booking", booking_id=1),
             Hold(at(2.5), at(5), ("carme-n1",), "a booking", booking_id=2)]
    with pytest.raises(CapacityConflict) as e:
        place(book(gpus=2, gpu_type="a100"), [N1, N2], holds)
    assert e.value.status == 409
    assert "2027-03-20 10:00–12:00 UTC on carme-n2" in str(e.value) and "12:30–15:00" in str(e.value)
    assert len(e.value.conflicts) == 2


def test_within_capacity_an_overlap_is_fine_and_windows_that_only_touch_do_not_overlap():
    holds = [Hold(at(0), at(3), ("carme-n2",), "a booking", booking_id=1)]
    assert place(book(gpus=2, gpu_type="a100"), [N1, N2], holds) == ("carme-n1",)
    touching = [Hold(at(-1), at(1), ("carme-n1", "carme-n2"), "reservation maint")]
    assert place(book(gpu_type="a100"), [N1, N2], touching) == ("carme-n2",)


def test_a_drained_node_offers_nothing_and_is_named():
    drained = NodeGpus("carme-n2", N2.partitions, N2.gpus, usable=False, state="drained")
    with pytest.raises(CapacityConflict) as e:
        place(book(gpus=1, gpu_type="1g.10gb"), [N1, drained], [])
    assert "carme-n2 is down or drained" in str(e.value)


def test_gpu_mode_counts_gpus_not_nodes():
    holds = [Hold(at(0), at(3), ("carme-n1",), "a booking", {"carme-n1": {"a100": 3}}, booking_id=1)]
    assert place(book(gpus=1, gpu_type="a100"), [N1], holds, whole_nodes=False) == ("carme-n1",)
    with pytest.raises(CapacityConflict):
        place(book(gpus=2, gpu_type="a100"), [N1], holds, whole_nodes=False)
    with pytest.raises(CapacityConflict):
        place(book(gpus=1, gpu_type="a100"), [N1], holds, whole_nodes=True)


def test_the_views_nodes_jobs_and_reservations_become_nodes_and_holds():
    nodes = nodes_from_view([
        {"name": "carme-n1", "state": "idle", "flags": ["RESERVED"], "partitions": ["interactive"],
         "gpus": [{"type": "a100", "total": 4, "allocated": 0}]},
        {"name": "carme-n2", "state": "drained", "flags": ["DRAIN"], "partitions": ["interactive"],
         "gpus": [{"type": "a100", "total": 2, "allocated": 0}, {"type": "1g.10gb", "total": 4, "allocated": 0}]},
    ])
    assert [(n.name, n.usable, n.count("")) for n in nodes] == [("carme-n1", True, 4), ("carme-n2", False, 6)]
    jobs = job_holds([
        {"state": "RUNNING", "nodes": "carme-n[1-2]", "start_time": NOW.timestamp(), "end_time": at(8).timestamp(), "gpus": 1},
        {"state": "RUNNING", "nodes": "carme-n1", "start_time": 0, "end_time": at(0.5).timestamp(), "gpus": 1},
        {"state": "PENDING", "nodes": "", "end_time": 0},
    ], at(1))
    assert [(h.nodes, h.end) for h in jobs] == [(("carme-n1", "carme-n2"), at(8))]
    holds = reservation_holds([{"name": "maint", "start_time": at(1).timestamp(), "end_time": at(2).timestamp(),
                                "nodes": "carme-n1"},
                               {"name": "carme-r1-alice", "start_time": 0, "end_time": 1, "nodes": "carme-n2"}],
                              skip={"carme-r1-alice"})
    assert [(h.what, h.nodes) for h in holds] == [("reservation maint", ("carme-n1",))]


# ---- SLURM's side ------------------------------------------------------------------------------------

def test_the_create_argv():
    spec = ReservationSpec("carme-r12-alice", ("alice",), 1796203200, 1796210400, ("carme-n2",))
    assert create_reservation_argv(spec) == [
        "scontrol", "create", "reservation", "ReservationName=carme-r12-alice", "Users=alice",
        "StartTime=uts1796203200", "EndTime=uts1796210400", "Nodes=carme-n2"]
    tres = ReservationSpec("r", ("alice",), 1, 2, ("n1", "n2"), partition="batch", gpus=2, gpu_type="a100",
                           gpus_as_tres=True, flags=("PURGE_COMP",))
    assert create_reservation_argv(tres)[-4:] == ["Nodes=n1,n2", "PartitionName=batch", "TRES=gres/gpu:a100=2",
                                                  "Flags=PURGE_COMP"]
    assert update_reservation_argv(spec)[:3] == ["scontrol", "update", "ReservationName=carme-r12-alice"]
    assert delete_reservation_argv("carme-r12-alice") == ["scontrol", "delete", "ReservationName=carme-r12-alice"]


@pytest.mark.parametrize("change, field", [
    ({"name": "r x"}, "reservation name"), ({"users": ("alice,bob",)}, "user"), ({"users": ()}, "users"),
    ({"nodes": ("n1 Flags=MAINT",)}, "node"), ({"end": 1}, "end"), ({"start": "now"}, "start"),
    ({"partition": "a=b"}, "partition"), ({"flags": ("maint",)}, "flag"),
])
def test_the_argv_refuses_values_slurm_would_parse_otherwise(change, field):
    spec = ReservationSpec(**{**dict(name="r", users=("alice",), start=10, end=20, nodes=("n1",)), **change})
    with pytest.raises(ValueError, match=f"^{field}"):
        create_reservation_argv(spec)


def test_hostlists():
    assert expand_hostlist("carme-n[1-3,7],gpu[08-10]") == ["carme-n1", "carme-n2", "carme-n3", "carme-n7",
                                                            "gpu08", "gpu09", "gpu10"]
    assert expand_hostlist("n1") == ["n1"] and expand_hostlist("(null)") == [] and expand_hostlist("") == []
    assert expand_hostlist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    for bad in ("n[1-", "n[3-1]", "n[a]", "n]"):
        with pytest.raises(ValueError):
            expand_hostlist(bad)


def test_who_a_reservation_admits():
    text = ("ReservationName=a Users=alice StartTime=2026-12-02T07:15:50 EndTime=2026-12-02T07:45:50 State=ACTIVE\n"
            "ReservationName=b Users=-alice StartTime=2026-12-02T07:15:50 EndTime=2026-12-02T07:45:50 State=ACTIVE\n"
            "ReservationName=c Users=(null) Accounts=course StartTime=2026-12-02T07:15:50 "
            "EndTime=2026-12-02T07:45:50 State=INACTIVE\n")
    a, b, c = parse_reservations_text(text)
    assert (a.admits("alice"), a.admits("bob")) == (True, False)
    assert (b.admits("alice"), b.admits("bob")) == (False, True)
    assert c.admits("bob") is None


def booking(id=1, state="approved", start=at(1), end=at(3), name="carme-r1-alice", in_slurm=NOW, **kw):
    return Booking(id=id, user=kw.get("user", "alice"), state=state, start=start, end=end, gpus=2, gpu_type="a100",
                   partition="", title=kw.get("title", ""), nodes=("carme-n2",), slurm_name=name, note="",
                   created_at=NOW, created_by="alice", decided_at=NOW, in_slurm_at=in_slurm)


def test_names_carme_gives():
    assert slurm_name("carme-r", 12, "alice") == "carme-r12-alice"
    assert slurm_name("carme-r", 12, "a,b") == "carme-r12"
    assert carme_named("carme-r", "carme-r12-alice") == 12 and carme_named("carme-r", "carme-r12") == 12
    assert carme_named("carme-r", "maint") is None and carme_named("carme-r", "carme-rx") is None


def test_the_sync_plan():
    later = NOW.timestamp() + 30
    ended = booking(1, end=NOW - timedelta(minutes=1), name="carme-r1-alice")
    gone = booking(2, name="carme-r2-alice")
    fresh = booking(3, name="carme-r3-alice", in_slurm=NOW + timedelta(seconds=60))  # newer than the snapshot
    kept = booking(4, name="carme-r4-alice")
    expired = booking(5, state="pending", end=NOW - timedelta(minutes=1), name=None)
    cancelled = booking(6, state="cancelled", name="carme-r6-alice")
    plan = sync_plan([ended, gone, fresh, kept, expired, cancelled],
                     ["carme-r4-alice", "carme-r6-alice", "carme-r99-bob", "maint"], later, NOW, "carme-r")
    assert [b.id for b in plan.ended] == [1] and [b.id for b in plan.gone] == [2] and [b.id for b in plan.expired] == [5]
    assert plan.delete == ("carme-r6-alice",) and plan.unknown == ("carme-r99-bob",)


def test_without_a_snapshot_nothing_is_gone():
    assert sync_plan([booking(2)], [], None, NOW, "carme-r").gone == ()


def test_the_ics_feed_parses_with_icalendar():
    text = calendar([booking(1, title="thesis; deadline, final"), booking(2, state="pending", name=None),
                     booking(3, state="cancelled", title="ü" * 60)], "carme.example", NOW)
    assert "\r\n" in text and all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    cal = icalendar.Calendar.from_ical(text)
    events = cal.walk("VEVENT")
    assert [str(e["STATUS"]) for e in events] == ["CONFIRMED", "TENTATIVE", "CANCELLED"]
    assert events[0].decoded("DTSTART") == at(1) and events[0].decoded("DTEND") == at(3)
    assert str(events[0]["SUMMARY"]) == "thesis; deadline, final: 2 a100 GPUs"
    assert "carme-r1-alice" in str(events[0]["DESCRIPTION"])
    assert str(events[2]["SUMMARY"]).startswith("ü" * 60)


def test_an_update_sets_only_the_fields_asked():
    spec = ReservationSpec("r1", ("alice",), 100, 200, ("carme-n2",))
    assert update_reservation_argv(spec, {"end", "users"}) == ["scontrol", "update", "ReservationName=r1",
                                                               "Users=alice", "EndTime=uts200"]
    with pytest.raises(ValueError, match="fields"):
        update_reservation_argv(spec, {"name"})


@pytest.mark.parametrize("body, field", [
    ({"gpus": "²"}, "gpus"), ({"end": "9999-12-31T23:30", "timezone": "America/New_York"}, "end"),
    ({"start": "0001-01-01T00:00+05:00"}, "start"),
])
def test_odd_input_is_a_400_not_a_crash(body, field):
    with pytest.raises(BookingError) as e:
        book(**body)
    assert e.value.field == field and e.value.status == 400


def test_jobs_inside_a_bookings_own_reservation_are_not_held_twice():
    running = [{"state": "RUNNING", "nodes": "carme-n2", "start_time": NOW.timestamp(), "end_time": at(8).timestamp(),
                "gpus": 2, "reservation": "carme-r1-alice"}]
    assert job_holds(running, at(1), inside={"carme-r1-alice"}) == []
    assert len(job_holds(running, at(1))) == 1
