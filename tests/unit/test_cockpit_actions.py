"""The cockpit's actions (issue 23): the scontrol argv builder, input checks naming the field, the audit store
and its migration, and the service's hub wiring (scopes, the admins' role)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carme_core.db import version_table
from carme_services.cockpit.actions import (
    check_body,
    check_node,
    check_reason,
    check_server_target,
    drain_argv,
    resume_argv,
)
from carme_services.cockpit.errors import InputError
from carme_services.cockpit.service import ADMIN_SCOPE, NAME, READ_SCOPE, hub_service
from carme_services.cockpit.store import SERVICE, Base, CockpitStore, database
from carme_services.wiring import ServiceSettings

NODES = ("carme-n1", "carme-n2")


def test_drain_and_resume_are_scontrol_update_argv_lists():
    reason = check_reason("  fan   broken (ticket #12)  ")
    assert reason == "fan broken (ticket #12)"
    assert drain_argv(check_node("carme-n2", NODES), reason) == [
        "scontrol", "update", "NodeName=carme-n2", "State=DRAIN", "Reason=fan broken (ticket #12)"]
    assert resume_argv("carme-n2") == ["scontrol", "update", "NodeName=carme-n2", "State=RESUME"]
    with pytest.raises(ValueError):
        drain_argv("carme-n2", "a;b\"c")  # the builder refuses what the checks would
    with pytest.raises(ValueError):
        resume_argv("carme-n2 State=DOWN")


@pytest.mark.parametrize(("node", "words"), [
    ("carme-n9", "SLURM lists no node 'carme-n9' (nodes: carme-n1, carme-n2)"),
    ("carme-n1 State=DOWN", "must be a node name"),
    ("", "must be a node name"),
    (7, "must be a node name"),
    ("-x", "must be a node name"),
])
def test_a_node_must_be_one_the_view_lists(node, words):
    with pytest.raises(InputError) as e:
        check_node(node, NODES)
    assert e.value.field == "node" and words in str(e.value) and str(e.value).startswith("node: ")


@pytest.mark.parametrize(("reason", "words"), [
    ("", "is required"),
    (None, "is required"),
    ("x" * 129, "at most 128 characters, not 129"),
    ('fan "broken"', "not '\"'"),
    ("a\nb=c", "not '='"),  # whitespace is folded; '=' is not allowed
    (["fan"], "must be text"),
])
def test_a_drain_reason_is_required_short_and_plain(reason, words):
    with pytest.raises(InputError) as e:
        check_reason(reason)
    assert e.value.field == "reason" and words in str(e.value)
    assert check_reason("", required=False) == ""


def test_a_stop_names_a_user_and_a_server_and_nothing_else():
    assert check_server_target({"user": "alice"}) == ("alice", "")
    assert check_server_target({"user": "alice", "server": "exp2"}) == ("alice", "exp2")
    for body, field in (({}, "user"), ({"user": ""}, "user"), ({"user": "a/b"}, "user"),
                        ({"user": "alice", "server": 3}, "server"), ({"user": "alice", "job": "1"}, "job")):
        with pytest.raises(InputError) as e:
            check_server_target(body)
        assert e.value.field == field, body
    with pytest.raises(InputError) as e:
        check_body({"reason": "x", "force": True}, ("reason",))
    assert str(e.value) == "force: unknown field (fields: reason)"


def test_the_audit_keeps_who_when_what_and_the_result(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'cockpit.sqlite'}")
    db.upgrade()
    store = CockpitStore(db)
    store.record(actor="carol", action="drain", target="carme-n2", outcome="done", message="drained: fan",
                 reason="fan")
    store.record(actor="carol", action="stop", target="alice/", outcome="failed", message="the hub refused")
    first, second = store.actions()[::-1]
    assert (first["actor"], first["action"], first["target"], first["reason"], first["outcome"]) == \
        ("carol", "drain", "carme-n2", "fan", "done")
    assert second["outcome"] == "failed" and second["at"] >= first["at"] > 0
    assert [a["action"] for a in store.actions(target="carme-n2")] == ["drain"]
    with pytest.raises(ValueError, match="action"):
        store.record(actor="carol", action="reboot", target="n", outcome="done", message="")
    with pytest.raises(ValueError, match="outcome"):
        store.record(actor="carol", action="stop", target="n", outcome="maybe", message="")


def test_the_migration_and_the_models_agree_and_downgrade_drops_the_table(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    db.upgrade()
    table = version_table(SERVICE)
    assert table == "alembic_version_carme_cockpit" and db.current_revision() == "0001"
    assert set(sa.inspect(db.engine).get_table_names()) == {"cockpit_actions", table}
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": table, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    command.downgrade(db.alembic_config(), "base")
    assert set(sa.inspect(db.engine).get_table_names()) == {table}


def test_the_hub_wiring_gives_admins_both_scopes_and_users_none():
    wiring = hub_service(ServiceSettings(key="cockpit", values={"operator_groups": ["ops"]}, admin_users=("carol",),
                                         state_dir="/var/lib/carme"))
    spec = wiring["service"]
    assert spec["name"] == NAME and spec["command"][-1] == "carme_services.cockpit.service"
    assert spec["url"] == "http://127.0.0.1:10110" and spec["display"]
    assert set(wiring["custom_scopes"]) == {READ_SCOPE, ADMIN_SCOPE}
    roles = {r["name"]: r for r in wiring["roles"]}
    assert "custom:carme-slurm:read" in roles[NAME]["scopes"] and "servers" in roles[NAME]["scopes"]
    admins = roles[f"{NAME}-admins"]
    assert admins["users"] == ["carol"] and "admin" in admins["groups"]
    assert {ADMIN_SCOPE, READ_SCOPE, f"access:services!service={NAME}"} <= set(admins["scopes"])
    operators = roles[f"{NAME}-operators"]
    assert operators["groups"] == ["ops"] and ADMIN_SCOPE not in operators["scopes"]
    assert "user_scopes" not in wiring  # a user gets nothing: the page is 403 for them
    assert '"db_url": "sqlite:////var/lib/carme/carme-cockpit.sqlite"' in spec["environment"]["CARME_SERVICE_CONFIG"]
    with pytest.raises(ValueError, match="max_window_days"):
        hub_service(ServiceSettings(key="cockpit", values={"max_window_days": 0}))
    with pytest.raises(ValueError, match="no setting 'window'"):
        hub_service(ServiceSettings(key="cockpit", values={"window": 3}))
