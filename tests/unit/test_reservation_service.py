"""Issue 19, part 3: the carme-reservations service's passes over a real SQLite store, with the hub's
view served from fixed documents and scontrol recorded (no SLURM): a booking reaches SLURM as one
create argv, a refusal by SLURM leaves nothing booked, booked GPU-hours count against the budget,
approval waits, a cancel deletes, the sync closes what ended and marks what was deleted by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from traitlets.config import Config

from carme_services.reservations import service as service_module
from carme_services.reservations.booking import BookingError
from carme_services.reservations.service import ReservationService
from carme_slurm import SlurmCommandError

NODES = {"snapshot": {"slurm_answering": True, "last_snapshot": 0}, "nodes": [
    {"name": "carme-n1", "state": "idle", "flags": [], "partitions": ["interactive"],
     "gpus": [{"type": "a100", "total": 4, "allocated": 0}]},
    {"name": "carme-n2", "state": "idle", "flags": [], "partitions": ["interactive"],
     "gpus": [{"type": "a100", "total": 2, "allocated": 0}, {"type": "1g.10gb", "total": 4, "allocated": 0}]},
]}


class FakeHub:
    def __init__(self):
        self.reservations, self.snapshot_at, self.usage = [], None, []

    async def slurm(self, kind):
        if kind == "nodes":
            return NODES
        if kind == "jobs":
            return {"snapshot": {}, "jobs": []}
        if kind == "usage":
            return {"snapshot": {}, "usage": self.usage}
        return {"snapshot": {"slurm_answering": True, "last_snapshot": self.snapshot_at},
                "reservations": [{"name": n, "start_time": 0, "end_time": 1, "nodes": ""} for n in self.reservations]}


@pytest.fixture
def service(tmp_path, monkeypatch):
    config = Config({"ReservationService": {"db_url": f"sqlite:///{tmp_path}/bookings.sqlite", "approval_roles": ["user"],
                                            "name_prefix": "carme-r"},
                     "CarmeQuota": {"role_limits": {"power": {"gpu_hours": 10}}}})
    app = ReservationService(config=config)
    app.initialize([])
    hub = FakeHub()
    monkeypatch.setattr(app, "hub_client", lambda: hub)
    app.ran, app.refuse = [], None

    async def run_command(argv, **kwargs):
        if app.refuse:
            raise SlurmCommandError(argv, app.refuse, 1)
        app.ran.append(argv)
        hub.reservations.append(argv[3].partition("=")[2]) if argv[1] == "create" else None
        return ""

    monkeypatch.setattr(service_module, "run_command", run_command)
    app.hub = hub
    return app


def window(hours_ahead: float, length: float = 1.0) -> dict:
    start = datetime.now(timezone.utc) + timedelta(hours=hours_ahead)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=length)).isoformat()}


async def test_a_booking_becomes_one_scontrol_create_for_the_user_only(service):
    booking = await service.book("alice", "power", {**window(1), "gpus": 2, "gpu_type": "a100"}, "alice")
    assert booking.state == "approved" and booking.slurm_name == f"carme-r{booking.id}-alice"
    (argv,) = service.ran
    assert argv[:5] == ["scontrol", "create", "reservation", f"ReservationName={booking.slurm_name}", "Users=alice"]
    assert argv[5] == f"StartTime=uts{int(booking.start.timestamp())}" and argv[-1] == "Nodes=carme-n2"


async def test_when_slurm_refuses_nothing_stays_booked(service):
    service.refuse = "Requested nodes are busy"
    with pytest.raises(BookingError) as e:
        await service.book("alice", "power", {**window(1), "gpus": 1}, "alice")
    assert e.value.status == 409 and "Requested nodes are busy" in str(e.value)
    (kept,) = service.store.bookings()
    assert kept.state == "cancelled" and "Requested nodes are busy" in kept.note
    service.refuse = None
    assert (await service.book("alice", "power", {**window(1), "gpus": 1}, "alice")).state == "approved"


async def test_booked_gpu_hours_count_against_the_budget(service):
    service.hub.usage = [{"account": "carme", "user": "alice", "gpu_minutes_used": 120.0, "gpu_minutes_running": 0.0}]
    await service.book("alice", "power", {**window(1, 2), "gpus": 2}, "alice")  # 2 used + 4 booked of 10
    with pytest.raises(BookingError) as e:
        await service.book("alice", "power", {**window(5, 3), "gpus": 2}, "alice")  # + 6 > 10
    assert e.value.status == 403 and e.value.field == "gpus"
    assert "2.0 used this period and 4.0 booked" in str(e.value) and "budget of 10 GPU-hours" in str(e.value)
    service.count_against_quota = False
    assert (await service.book("alice", "power", {**window(5, 3), "gpus": 2}, "alice")).state == "approved"


async def test_a_role_with_approval_waits_and_only_an_approval_reaches_slurm(service):
    booking = await service.book("erin", "user", {**window(2), "gpus": 1}, "erin")
    assert booking.state == "pending" and service.ran == []
    approved = await service.decide(booking.id, True, "admin")
    assert approved.state == "approved" and approved.decided_by == "admin" and len(service.ran) == 1
    with pytest.raises(BookingError) as e:
        await service.decide(booking.id, False, "admin")
    assert e.value.status == 409


async def test_a_cancel_deletes_the_reservation_and_an_edit_updates_it(service):
    booking = await service.book("alice", "power", {**window(1), "gpus": 1}, "alice")
    edited = await service.edit(booking.id, {"gpus": 2, "title": "longer"}, "power", "alice")
    assert edited.gpus == 2 and service.ran[-1][:3] == ["scontrol", "update", f"ReservationName={booking.slurm_name}"]
    cancelled = await service.cancel(booking.id, "alice")
    assert cancelled.state == "cancelled" and service.ran[-1] == ["scontrol", "delete",
                                                                   f"ReservationName={booking.slurm_name}"]


async def test_the_sync_marks_gone_only_after_a_later_snapshot_and_reports_strays(service):
    booking = await service.book("alice", "power", {**window(1), "gpus": 1}, "alice")
    service.hub.reservations = ["carme-r999-bob"]  # alice's was deleted by hand; a stray is there
    service.hub.snapshot_at = booking.in_slurm_at.timestamp() - 5  # older than her reservation: doubt
    result = await service.sync()
    assert result["gone"] == [] and result["unknown"] == ["carme-r999-bob"]
    service.hub.snapshot_at = booking.in_slurm_at.timestamp() + 5
    assert (await service.sync())["gone"] == [booking.id]
    assert service.store.get(booking.id).state == "gone"


async def test_an_edit_of_a_started_booking_keeps_its_start_and_nodes_and_sends_no_start(service):
    now = datetime.now(timezone.utc)
    booking = await service.book("alice", "power", {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
                                                    "gpus": 2, "gpu_type": "a100"}, "alice")
    edited = await service.edit(booking.id, {"end": (now + timedelta(hours=2)).isoformat()}, "power", "alice")
    assert edited.nodes == booking.nodes == ("carme-n2",)
    update = service.ran[-1]
    assert update[:3] == ["scontrol", "update", f"ReservationName={booking.slurm_name}"]
    assert not any(a.startswith("StartTime=") for a in update) and any(a.startswith("EndTime=") for a in update)
    ran = len(service.ran)
    await service.edit(booking.id, {"title": "renamed"}, "power", "alice")  # nothing SLURM holds changed
    assert len(service.ran) == ran
    with pytest.raises(BookingError) as e:
        await service.edit(booking.id, {"start": (now + timedelta(minutes=30)).isoformat()}, "power", "alice")
    assert e.value.field == "start"


async def test_a_change_by_a_role_that_needs_approval_waits_for_it_again(service):
    booking = await service.book("erin", "user", {**window(2), "gpus": 1}, "erin")
    approved = await service.decide(booking.id, True, "admin")
    changed = await service.edit(booking.id, {"gpus": 2}, "user", "erin")
    assert changed.state == "pending" and changed.slurm_name is None
    assert service.ran[-1] == ["scontrol", "delete", f"ReservationName={approved.slurm_name}"]


async def test_a_user_name_slurm_cannot_take_is_a_400_and_nothing_stays_booked(service):
    with pytest.raises(BookingError) as e:
        await service.book("a@b", "power", {**window(1), "gpus": 1}, "a@b")
    assert e.value.status == 400 and e.value.field == "user"
    assert [b.state for b in service.store.bookings()] == ["cancelled"]
