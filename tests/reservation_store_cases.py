"""The reservations store's test bodies, shared by SQLite (tests/unit) and PostgreSQL (tests/integration).

A test module runs them all with `from tests.reservation_store_cases import *` and a
`reservation_db` fixture: a fresh, empty `carme_services.reservations.store.database(url)` on its
backend, removed afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carme_core.db import version_table
from carme_services.reservations.booking import BookingRequest
from carme_services.reservations.store import (OPEN_STATES, SERVICE, Base, BookingRow, BookingStore, StoreError,
                                               token_hash)

TABLES = {"reservation_bookings", "reservation_events", "reservation_feed_tokens"}
HEAD = "0001"
VERSION_TABLE = "alembic_version_carme_reservations"
T0 = datetime(2027, 3, 28, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(reservation_db) -> BookingStore:
    reservation_db.upgrade()
    return BookingStore(reservation_db)


def at(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


def request(start: float, end: float, gpus: int = 2, gpu_type: str = "a100", title: str = "") -> BookingRequest:
    return BookingRequest(at(start), at(end), gpus, gpu_type, "batch", title)


def is_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


def ids(bookings) -> list[int]:
    return [b.id for b in bookings]


def test_upgrade_from_empty_creates_the_three_tables_records_the_revision_and_downgrade_drops_them(reservation_db):
    assert version_table(SERVICE) == VERSION_TABLE
    assert reservation_db.current_revision() is None
    reservation_db.upgrade()
    reservation_db.upgrade()  # idempotent
    assert reservation_db.current_revision() == HEAD
    assert set(sa.inspect(reservation_db.engine).get_table_names()) == TABLES | {VERSION_TABLE}
    with reservation_db.engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD]
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []  # the migration and the models agree
    command.downgrade(reservation_db.alembic_config(), "base")
    inspector = sa.inspect(reservation_db.engine)
    assert set(inspector.get_table_names()) == {VERSION_TABLE}  # Alembic's own table stays, empty
    if reservation_db.engine.dialect.supports_sequences:
        assert inspector.get_sequence_names() == []
    assert reservation_db.current_revision() is None
    reservation_db.upgrade()  # and up again
    assert reservation_db.current_revision() == HEAD


def test_a_pending_and_an_approved_booking_read_back_with_aware_utc_times_their_nodes_and_state(store):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    pending = store.add("alice", request(10, 12, title="thesis runs"), ("carme-n1",), "pending", actor="alice")
    berlin = timezone(timedelta(hours=2))
    approved = store.add("bob", BookingRequest(at(14).astimezone(berlin), at(18).astimezone(berlin), 6, "", "", ""),
                         ("carme-n1", "carme-n2"), "approved", actor="admin")
    assert pending.id != approved.id
    assert store.get(pending.id) == pending and store.get(approved.id) == approved
    read = store.get(pending.id)
    assert (read.user, read.state, read.nodes, read.gpus, read.gpu_type, read.partition, read.title) == (
        "alice", "pending", ("carme-n1",), 2, "a100", "batch", "thesis runs")
    assert (read.start, read.end) == (at(10), at(12)) and is_utc(read.start) and is_utc(read.end)
    assert read.request == request(10, 12, title="thesis runs") and read.gpu_hours == 4.0 and read.is_open
    assert (read.slurm_name, read.note, read.created_by, read.decided_at, read.decided_by, read.in_slurm_at) == (
        None, "", "alice", None, None, None)
    assert is_utc(read.created_at) and before <= read.created_at <= datetime.now(timezone.utc)
    read = store.get(approved.id)
    assert (read.user, read.state, read.nodes, read.gpus, read.gpu_type) == (
        "bob", "approved", ("carme-n1", "carme-n2"), 6, "")
    assert (read.start, read.end) == (at(14), at(18)) and is_utc(read.start) and is_utc(read.end)  # +02:00 in, UTC out
    assert read.decided_by == "admin" and is_utc(read.decided_at)
    assert [e["action"] for e in store.events(pending.id)] == ["booked"]
    assert store.events(approved.id)[0]["actor"] == "admin"


def test_a_new_booking_is_pending_or_approved_only_and_may_hold_no_nodes(store):
    for state in ("denied", "cancelled", "gone", "ended", "maybe"):
        with pytest.raises(StoreError, match="^state: "):
            store.add("alice", request(10, 12), ("carme-n1",), state, actor="alice")
    assert store.bookings() == []
    assert store.get(store.add("alice", request(10, 12), (), "pending", actor="alice").id).nodes == ()


def test_bookings_filter_by_state_user_and_a_window_they_overlap_and_touching_is_no_overlap(store):
    late = store.add("alice", request(14, 16), ("carme-n1",), "pending", actor="alice")
    early = store.add("alice", request(10, 12), ("carme-n1",), "pending", actor="alice")
    middle = store.add("bob", request(12, 14), ("carme-n2",), "approved", actor="admin")
    late = store.update(late, "alice", "cancelled", state="cancelled")
    assert ids(store.bookings()) == [early.id, middle.id, late.id]  # by start
    assert ids(store.bookings(OPEN_STATES)) == [early.id, middle.id]
    assert ids(store.bookings(("cancelled", "gone"))) == [late.id]
    assert ids(store.bookings(user="alice")) == [early.id, late.id]
    assert ids(store.bookings(OPEN_STATES, "alice")) == [early.id]
    assert ids(store.bookings(user="carol")) == []
    assert ids(store.bookings(overlapping=(at(11), at(13)))) == [early.id, middle.id]
    assert ids(store.bookings(overlapping=(at(12), at(14)))) == [middle.id]  # early ends at 12, late starts at 14
    assert ids(store.bookings(overlapping=(at(13), at(13.5)))) == [middle.id]  # inside it
    assert ids(store.bookings(overlapping=(at(9), at(17)))) == [early.id, middle.id, late.id]  # around all
    assert ids(store.bookings(overlapping=(at(8), at(10)))) == []  # touches early's start
    assert ids(store.bookings(overlapping=(at(16), at(18)))) == []  # touches late's end
    assert ids(store.bookings(OPEN_STATES, "alice", (at(11), at(15)))) == [early.id]


def test_update_changes_the_fields_and_writes_an_event(store):
    booking = store.add("alice", request(10, 12), ("carme-n1",), "pending", actor="alice")
    decided = datetime.now(timezone.utc).replace(microsecond=0)
    updated = store.update(booking, "admin", "approved", "SLURM reservation carme-r1", state="approved",
                           start=at(11), end=at(13), gpus=4, gpu_type="", nodes=("carme-n1", "carme-n2"),
                           slurm_name="carme-r1", note="ok", decided_at=decided, decided_by="admin",
                           in_slurm_at=decided, title="moved")
    assert store.get(booking.id) == updated
    assert (updated.state, updated.start, updated.end, updated.gpus, updated.gpu_type, updated.title) == (
        "approved", at(11), at(13), 4, "", "moved")
    assert (updated.nodes, updated.slurm_name, updated.note, updated.decided_by) == (
        ("carme-n1", "carme-n2"), "carme-r1", "ok", "admin")
    assert updated.decided_at == updated.in_slurm_at == decided and is_utc(updated.decided_at)
    assert (updated.user, updated.created_by, updated.created_at) == ("alice", "alice", booking.created_at)
    events = store.events(booking.id)
    assert [(e["actor"], e["action"]) for e in events] == [("alice", "booked"), ("admin", "approved")]
    assert events[1]["detail"] == "SLURM reservation carme-r1"
    assert is_utc(datetime.fromisoformat(events[1]["at"]))
    store.update(updated, "carme-reservations", "noted", "x" * 5000, note="synced")
    assert len(store.events(booking.id)[-1]["detail"]) == 2000 and store.get(booking.id).note == "synced"
    assert store.events(9999) == []


def test_update_refuses_a_stale_copy_whose_state_changed_meanwhile(store):
    booking = store.add("alice", request(10, 12), ("carme-n1",), "pending", actor="alice")
    stale = store.get(booking.id)
    store.update(stale, "admin", "approved", state="approved", slurm_name="carme-r1")
    with pytest.raises(StoreError, match=f"booking {booking.id}: is approved now, not pending"):
        store.update(stale, "alice", "cancelled", state="cancelled")
    read = store.get(booking.id)
    assert (read.state, read.slurm_name) == ("approved", "carme-r1")
    assert [e["action"] for e in store.events(booking.id)] == ["booked", "approved"]  # the refused one wrote none


def test_update_of_a_booking_that_is_not_there_is_refused_as_unknown(store):
    booking = store.add("alice", request(10, 12), ("carme-n1",), "pending", actor="alice")
    with pytest.raises(StoreError, match="booking 9999: unknown"):
        store.update(replace(booking, id=9999), "admin", "approved", state="approved")
    assert store.get(booking.id) == booking


def test_by_slurm_names_finds_the_bookings_with_those_reservations_in_any_state(store):
    one = store.add("alice", request(10, 12), ("carme-n1",), "approved", actor="admin")
    two = store.add("bob", request(12, 14), ("carme-n2",), "approved", actor="admin")
    store.add("carol", request(14, 16), ("carme-n2",), "pending", actor="carol")  # no reservation
    one = store.update(one, "admin", "reserved", slurm_name="carme-r1")
    two = store.update(two, "admin", "reserved", slurm_name="carme-r2")
    two = store.update(two, "carme-reservations", "gone", state="gone")
    assert sorted(ids(store.by_slurm_names(["carme-r1", "carme-r2", "carme-r9"]))) == [one.id, two.id]
    assert ids(store.by_slurm_names(n for n in ("carme-r2",))) == [two.id]  # any iterable
    assert store.by_slurm_names(["carme-r2"])[0].state == "gone"
    assert store.by_slurm_names([]) == [] and store.by_slurm_names(["carme-r9"]) == []


def test_the_database_refuses_a_second_booking_with_the_same_slurm_reservation(store):
    one = store.add("alice", request(10, 12), ("carme-n1",), "approved", actor="admin")
    two = store.add("bob", request(12, 14), ("carme-n2",), "approved", actor="admin")
    store.update(one, "admin", "reserved", slurm_name="carme-r1")
    with pytest.raises(sa.exc.IntegrityError):
        store.update(two, "admin", "reserved", slurm_name="carme-r1")
    assert store.get(two.id).slurm_name is None and len(store.events(two.id)) == 1


def test_get_of_an_unknown_booking_raises_store_error_naming_it_unknown(store):
    with pytest.raises(StoreError, match="booking 42: unknown"):
        store.get(42)


def test_only_the_newest_feed_token_of_its_user_opens_the_feed(store):
    assert not store.has_feed_token("alice")
    first = store.new_feed_token("alice")
    assert isinstance(first, str) and len(first) >= 40 and store.has_feed_token("alice")
    assert store.feed_user("alice", first)
    newest = store.new_feed_token("alice")
    assert newest != first
    assert store.feed_user("alice", newest) and not store.feed_user("alice", first)  # the old one is dead
    bobs = store.new_feed_token("bob")
    assert store.feed_user("bob", bobs) and not store.feed_user("bob", newest) and not store.feed_user("alice", bobs)
    assert not store.feed_user("carol", newest)  # a user with no token
    assert not store.feed_user("alice", "") and not store.feed_user("alice", newest[:-1])
    assert not store.has_feed_token("carol")


def test_only_a_hash_of_the_feed_token_is_stored(store):
    tokens = {user: store.new_feed_token(user) for user in ("alice", "bob")}
    with store.db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM reservation_feed_tokens")).mappings().all()
    assert len(rows) == 2
    for row in rows:
        token = tokens[row["user_name"]]
        assert row["token_sha256"] == token_hash(token) and len(row["token_sha256"]) == 64
        assert all(token not in str(value) for value in row.values())


def raw_row(**changes) -> BookingRow:
    values = {"user_name": "alice", "state": "pending", "start_at": at(10), "end_at": at(12), "gpus": 1,
              "gpu_type": "", "partition": "", "title": "", "nodes": "carme-n1", "note": "",
              "created_at": at(0), "created_by": "alice"}
    return BookingRow(**(values | changes))


@pytest.mark.parametrize("changes", [
    {"end_at": at(10)},  # end == start
    {"end_at": at(9)},  # end before start
    {"gpus": 0},
    {"gpus": -2},
    {"state": "maybe"},
], ids=["end-at-start", "end-before-start", "zero-gpus", "negative-gpus", "unknown-state"])
def test_the_database_itself_refuses_a_bad_window_gpu_count_or_state(store, changes):
    with store.db.session() as session:
        session.add(raw_row())  # the same row without the change is fine
    with pytest.raises(sa.exc.IntegrityError), store.db.session() as session:
        session.add(raw_row(**changes))
    assert len(store.bookings()) == 1
