"""The quota store's test bodies, shared by SQLite (tests/unit) and PostgreSQL (tests/integration).

A test module runs them all with `from tests.quota_store_cases import *` and a `quota_db`
fixture: a fresh, empty `carme_quota.store.database(url)` on its backend, removed afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carme_core.db import version_table
from carme_quota.limits import Limits, ProjectTemplate
from carme_quota.store import SERVICE, Base, QuotaStore, RequestRow, StoreError

TABLES = {"quota_overrides", "quota_projects", "quota_project_managers", "quota_project_members",
          "quota_membership_requests", "quota_audit", "quota_sync_state", "quota_disk_usage"}
HEAD = "0003"
VERSION_TABLE = "alembic_version_carme_quota"


@pytest.fixture
def store(quota_db) -> QuotaStore:
    quota_db.upgrade()
    return QuotaStore(quota_db)


def changes(store, target):
    """(action, field, old, new) of the target's audit entries, oldest first."""
    return [(e.action, e.field, e.old, e.new) for e in reversed(store.audit(target=target))]


def test_upgrade_from_empty_makes_what_the_models_say_and_downgrade_to_base_leaves_no_table(quota_db):
    assert version_table(SERVICE) == VERSION_TABLE
    assert quota_db.current_revision() is None
    quota_db.upgrade()
    quota_db.upgrade()  # idempotent
    assert quota_db.current_revision() == HEAD
    assert set(sa.inspect(quota_db.engine).get_table_names()) == TABLES | {VERSION_TABLE}
    with quota_db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []  # the migration and the models agree
    command.downgrade(quota_db.alembic_config(), "base")
    inspector = sa.inspect(quota_db.engine)
    assert set(inspector.get_table_names()) == {VERSION_TABLE}  # Alembic's own table stays, empty
    if quota_db.engine.dialect.supports_sequences:
        assert inspector.get_sequence_names() == []
    assert quota_db.current_revision() is None
    quota_db.upgrade()  # and up again
    assert quota_db.current_revision() == HEAD


def test_the_sync_remembers_what_it_applied_last(store):
    assert store.last_applied() is None
    store.save_applied({"cluster": "c", "qos": {"carme-user": 0}})
    store.save_applied({"cluster": "c", "qos": {"carme-user": 5}})
    assert store.last_applied() == {"cluster": "c", "qos": {"carme-user": 5}}


def test_set_override_audits_each_changed_field_old_to_new(store):
    before = datetime.now(timezone.utc)
    store.set_override("alice", Limits(gpus_per_job=2, gpu_hours=10), actor="admin")
    assert store.override("alice") == Limits(gpus_per_job=2, gpu_hours=10.0)
    assert changes(store, "user:alice") == [("override.set", "gpus_per_job", None, 2),
                                            ("override.set", "gpu_hours", None, 10.0)]
    store.set_override("alice", {"gpus_per_job": 2, "gpu_hours": 10.0}, actor="admin")  # nothing changed
    assert len(store.audit(target="user:alice")) == 2
    store.set_override("alice", Limits(gpus_per_job=4, max_servers=1), actor="carol")
    assert store.override("alice") == Limits(gpus_per_job=4, max_servers=1)
    assert changes(store, "user:alice")[2:] == [("override.set", "gpus_per_job", 2, 4),
                                                ("override.set", "max_servers", None, 1),
                                                ("override.set", "gpu_hours", 10.0, None)]
    newest = store.audit(limit=1)[0]
    assert newest.actor == "carol" and newest.target == "user:alice"
    assert newest.at.tzinfo is not None and newest.at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= newest.at <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert store.override("bob") == Limits() and store.overrides() == {"alice": Limits(gpus_per_job=4, max_servers=1)}


def test_clear_override_audits_each_field_it_set(store):
    store.set_override("alice", Limits(priority=100, jobs_per_day=5), actor="admin")
    assert store.clear_override("alice", actor="carme-quota") is True
    assert store.override("alice") == Limits()
    assert changes(store, "user:alice")[2:] == [("override.clear", "jobs_per_day", 5, None),
                                                ("override.clear", "priority", 100, None)]
    assert store.audit(limit=1)[0].actor == "carme-quota"
    assert store.clear_override("alice", actor="admin") is False  # none: no audit row
    assert len(store.audit()) == 4
    store.set_override("bob", Limits(max_servers=2), actor="admin")
    store.set_override("bob", Limits(), actor="admin")  # an empty override is no override
    assert store.overrides() == {} and changes(store, "user:bob")[-1] == ("override.set", "max_servers", 2, None)


def tampered(**values) -> Limits:
    limits = Limits()
    for name, value in values.items():
        object.__setattr__(limits, name, value)  # what a bug elsewhere could hand over
    return limits


@pytest.mark.parametrize(("limits", "field"), [
    ({"gpus_per_job": -1}, "gpus_per_job"),
    ({"gpu_hours": float("nan")}, "gpu_hours"),
    ({"max_servers": 1.5}, "max_servers"),
    ({"priority": "high"}, "priority"),
    ({"max_runtime_minutes": True}, "max_runtime_minutes"),
    ({"jobs_per_day": 10**9}, "jobs_per_day"),
    ({"gpus": 2}, "gpus"),
    (tampered(gpus_per_job=-3), "gpus_per_job"),
    (tampered(gpu_hours=float("inf")), "gpu_hours"),
    ("gpus_per_job=2", "override"),
])
def test_invalid_limits_are_refused_naming_the_field_and_nothing_is_written(store, limits, field):
    store.set_override("alice", Limits(max_servers=3), actor="admin")
    with pytest.raises(StoreError, match=field):
        store.set_override("alice", limits, actor="admin")
    with pytest.raises(StoreError, match=field):
        store.set_override("bob", limits, actor="admin")
    assert store.overrides() == {"alice": Limits(max_servers=3)}
    assert len(store.audit()) == 1


@pytest.mark.parametrize(("call", "field"), [
    (lambda s: s.set_override("", Limits(gpus_per_job=1), actor="admin"), "user"),
    (lambda s: s.set_override("al ice", Limits(gpus_per_job=1), actor="admin"), "user"),
    (lambda s: s.set_override("alice", Limits(gpus_per_job=1), actor=None), "actor"),
    (lambda s: s.create_project("vision", ProjectTemplate(), ["dave", "bad name"], actor="admin"), "managers"),
    (lambda s: s.create_project("vision", ProjectTemplate(), "dave", actor="admin"), "managers"),
    (lambda s: s.create_project("vision", ProjectTemplate(), [], actor="admin", description="x" * 501), "description"),
])
def test_bad_names_are_refused_naming_the_field(store, call, field):
    with pytest.raises(StoreError, match=f"^{field}: "):
        call(store)
    assert store.audit() == [] and store.project_names() == [] and store.overrides() == {}


def test_a_project_is_created_once_and_its_name_is_a_slurm_account_name(store):
    template = ProjectTemplate(gpus_at_once=8, gpus_per_job=2, max_runtime_minutes=480, gpu_hours=1000,
                               partitions=("interactive", "batch"))
    project = store.create_project("vision", template, ["erin", "dave", "dave"], actor="admin", description="CV lab")
    assert (project.name, project.description, project.template) == ("vision", "CV lab", template)
    assert (project.managers, project.members, project.created_by) == (("dave", "erin"), (), "admin")
    assert project.created_at.utcoffset() == timedelta(0)
    assert store.project("vision") == project
    assert changes(store, "project:vision") == [("project.create", None, None, {
        "gpus_at_once": 8, "gpus_per_job": 2, "max_runtime_minutes": 480, "gpu_hours": 1000.0,
        "disk_gib": None, "disk_inodes": None,
        "partitions": ["interactive", "batch"], "description": "CV lab", "managers": ["dave", "erin"]})]
    with pytest.raises(StoreError, match="project vision: already exists"):
        store.create_project("vision", ProjectTemplate(), [], actor="admin")
    for name in ("Vision", "v", "1vision", "vi sion", "x" * 33, "vision\n", "", None):
        with pytest.raises(StoreError, match="project name"):
            store.create_project(name, ProjectTemplate(), [], actor="admin")
    bad = ProjectTemplate()
    object.__setattr__(bad, "gpus_at_once", -1)
    with pytest.raises(StoreError, match="template.gpus_at_once"):
        store.create_project("nlp", bad, [], actor="admin")
    object.__setattr__(bad, "gpus_at_once", None)
    object.__setattr__(bad, "partitions", ("batch,gpu",))
    with pytest.raises(StoreError, match="template.partitions"):
        store.create_project("nlp", bad, [], actor="admin")
    with pytest.raises(StoreError, match="template"):
        store.create_project("nlp", {"gpus_at_once": 1}, [], actor="admin")
    with pytest.raises(StoreError, match="project nope: unknown project"):
        store.project("nope")
    assert store.project_names() == ["vision"] and len(store.audit()) == 1
    assert store.managed_by("dave") == ["vision"] and store.projects_of("dave") == []


def test_update_project_audits_each_changed_field(store):
    store.create_project("vision", ProjectTemplate(gpus_at_once=8), ["dave"], actor="admin")
    project = store.update_project("vision", "admin", template=ProjectTemplate(gpus_at_once=4, partitions=("batch",)),
                                   managers=["dave", "erin"])
    assert project.template == ProjectTemplate(gpus_at_once=4, partitions=("batch",))
    assert project.managers == ("dave", "erin")
    assert changes(store, "project:vision")[1:] == [("project.update", "gpus_at_once", 8, 4),
                                                    ("project.update", "partitions", [], ["batch"]),
                                                    ("project.update", "managers", ["dave"], ["dave", "erin"])]
    store.update_project("vision", "admin", template=project.template, description="")  # unchanged
    assert len(store.audit()) == 4
    assert store.update_project("vision", "erin", managers=["erin"], description="CV").managers == ("erin",)
    assert changes(store, "project:vision")[4:] == [("project.update", "description", "", "CV"),
                                                    ("project.update", "managers", ["dave", "erin"], ["erin"])]
    with pytest.raises(StoreError, match="project nope: unknown project"):
        store.update_project("nope", "admin", description="x")


def test_a_request_approved_adds_the_member(store):
    store.create_project("vision", ProjectTemplate(), ["dave"], actor="admin")
    request = store.request_membership("vision", "alice", "for my thesis")
    assert (request.project, request.user, request.message, request.state) == ("vision", "alice", "for my thesis", "pending")
    assert request.created_at.utcoffset() == timedelta(0) and request.decided_by is None
    assert store.requests("vision") == [request] and store.project("vision").members == ()
    decided = store.decide(request.id, approve=True, actor="dave")
    assert (decided.state, decided.decided_by) == ("approved", "dave") and decided.decided_at.utcoffset() == timedelta(0)
    assert store.project("vision").members == ("alice",)
    assert store.projects_of("alice") == ["vision"]
    assert store.requests("vision") == [] and store.requests("vision", state="approved") == [decided]
    assert changes(store, "project:vision")[1:] == [("member.request", None, None, {"request": request.id, "user": "alice"}),
                                                    ("member.approve", None, None, {"request": request.id, "user": "alice"})]
    assert [e.actor for e in store.audit(limit=2)] == ["dave", "alice"]


def test_a_request_denied_leaves_the_user_outside(store):
    store.create_project("vision", ProjectTemplate(), ["dave"], actor="admin")
    request = store.request_membership("vision", "alice")
    assert store.decide(request.id, approve=False, actor="dave").state == "denied"
    assert store.project("vision").members == () and store.projects_of("alice") == []
    assert store.audit(limit=1)[0].action == "member.deny"
    assert store.request_membership("vision", "alice").state == "pending"  # may ask again


def test_a_second_pending_request_is_refused(store):
    store.create_project("vision", ProjectTemplate(), ["dave"], actor="admin")
    store.request_membership("vision", "alice")
    with pytest.raises(StoreError, match="alice already has a pending request for project vision"):
        store.request_membership("vision", "alice", "again")
    store.request_membership("vision", "bob")  # another user may
    assert len(store.requests("vision")) == 2
    with pytest.raises(StoreError, match="message: must be a text of at most 500 characters, got 501"):
        store.request_membership("vision", "carol", "x" * 501)
    with pytest.raises(StoreError, match="project nope: unknown project"):
        store.request_membership("nope", "carol")
    assert len(store.requests()) == 2


def test_the_database_itself_refuses_a_second_pending_request(store):
    store.create_project("vision", ProjectTemplate(), [], actor="admin")
    row = {"project": "vision", "user_name": "alice", "message": "", "created_at": datetime.now(timezone.utc)}
    with store.db.session() as session:
        session.add(RequestRow(**row, state="denied"))
        session.add(RequestRow(**row, state="pending"))
    with pytest.raises(sa.exc.IntegrityError), store.db.session() as session:
        session.add(RequestRow(**row, state="pending"))
    with pytest.raises(sa.exc.IntegrityError), store.db.session() as session:
        session.add(RequestRow(**row, state="maybe"))


def test_only_a_pending_request_can_be_decided(store):
    store.create_project("vision", ProjectTemplate(), ["dave"], actor="admin")
    request = store.request_membership("vision", "alice")
    store.decide(request.id, approve=True, actor="dave")
    audited = len(store.audit())
    for approve in (True, False):
        with pytest.raises(StoreError, match=f"request {request.id}: not pending \\(already approved by dave\\)"):
            store.decide(request.id, approve=approve, actor="admin")
    with pytest.raises(StoreError, match="request 9999: unknown request"):
        store.decide(9999, approve=True, actor="admin")
    with pytest.raises(StoreError, match="request: must be a request id"):
        store.decide("1", approve=True, actor="admin")
    with pytest.raises(StoreError, match="approve: must be true or false"):
        store.decide(request.id, approve="yes", actor="admin")
    with pytest.raises(StoreError, match="user alice: already a member of project vision"):
        store.request_membership("vision", "alice")
    assert store.project("vision").members == ("alice",) and len(store.audit()) == audited


def test_projects_of_lists_the_projects_a_user_is_a_member_of(store):
    for name in ("vision", "nlp", "robotics"):
        store.create_project(name, ProjectTemplate(), ["dave"], actor="admin")
    for name in ("vision", "nlp"):
        store.decide(store.request_membership(name, "alice").id, approve=True, actor="dave")
    store.decide(store.request_membership("robotics", "alice").id, approve=False, actor="dave")
    store.decide(store.request_membership("robotics", "bob").id, approve=True, actor="dave")
    assert store.projects_of("alice") == ["nlp", "vision"]
    assert store.projects_of("bob") == ["robotics"] and store.projects_of("dave") == []
    store.remove_member("vision", "alice", actor="dave")
    assert store.projects_of("alice") == ["nlp"] and store.project("vision").members == ()
    assert changes(store, "project:vision")[-1] == ("member.remove", None, {"user": "alice"}, None)
    with pytest.raises(StoreError, match="user alice: not a member of project vision"):
        store.remove_member("vision", "alice", actor="dave")
    assert store.project_names() == ["nlp", "robotics", "vision"]


def test_the_audit_is_newest_first_and_bounded(store):
    for n in range(5):
        store.set_override("alice", Limits(max_servers=n + 1), actor="admin")
    entries = store.audit(limit=3)
    assert [e.new for e in entries] == [5, 4, 3] and [e.old for e in entries] == [4, 3, 2]
    assert store.audit(target="user:bob") == []
    for bad in (0, 10_001, "5", True):
        with pytest.raises(StoreError, match="limit"):
            store.audit(limit=bad)
