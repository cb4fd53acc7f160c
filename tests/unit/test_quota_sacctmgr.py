"""Quota policy -> sacctmgr argv, SLURM's association state parsed, and the drift between them."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from carme_core.roles import ADMIN, POWER, ROLES, USER
from carme_quota.limits import Limits, ProjectTemplate
from carme_quota.sacctmgr import (
    ASSOC_FORMAT,
    AccountSpec,
    AssocSpec,
    CurrentState,
    DesiredState,
    Drift,
    Plan,
    current_state_commands,
    dry_run_text,
    parse_associations,
    parse_qos,
    parse_state,
    parse_users,
    plan,
    role_qos,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sacctmgr"
C = "cluster=carme-dev"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def state(assoc="show-assoc-22.05-limits-constructed.txt", qos="show-qos-22.05-roles-constructed.txt",
          users="show-user-22.05.txt") -> CurrentState:
    return parse_state(fixture(assoc), fixture(qos), fixture(users))


REAL = {"assoc": "show-assoc-22.05.txt", "qos": "show-qos-22.05.txt"}  # this cluster now: nothing of Carme's
ALICE = Limits(gpus_per_job=1, max_servers=1, gpu_hours=100, max_runtime_minutes=480, jobs_per_day=5, priority=10)
BOB = Limits(gpus_per_job=4, max_servers=3, gpu_hours=1000, max_runtime_minutes=1440, priority=20)
VISION = ProjectTemplate(gpus_at_once=8, gpus_per_job=2, max_runtime_minutes=2880, gpu_hours=500)


def desired(alice=ALICE, vision=VISION, **replace) -> DesiredState:
    """The state `show-assoc-22.05-limits-constructed.txt` holds (alice a user, bob a power user)."""
    u, p = role_qos(USER), role_qos(POWER)
    values = {
        "cluster": "carme-dev", "root_account": "carme-dev",
        "qos": {role_qos(r): 10 * (i + 1) for i, r in enumerate(ROLES)},
        "accounts": {"proj-vision": AccountSpec.from_template("carme-dev", vision, "Vision project")},
        "associations": {
            ("alice", "carme-dev"): AssocSpec(alice, u, default_account=True),
            ("bob", "carme-dev"): AssocSpec(BOB, p, default_account=True),
            ("alice", "proj-vision"): AssocSpec(Limits(2, 1, None, 1440, None, 10), u),
            ("bob", "proj-vision"): AssocSpec(Limits(4, 3, None, 2880, None, 20), p),
        }}
    return DesiredState(**{**values, **replace})


# ---- parsing ---------------------------------------------------------------------------------------


def test_commands_are_read_only_argv_for_one_cluster():
    assoc, qos, users = current_state_commands("carme-dev")
    assert assoc == ["sacctmgr", "-n", "-P", "show", "assoc", "WOPLimits",
                     ("format=Cluster,Account,User,Partition,ParentName,MaxTRESPerJob,MaxJobs,MaxSubmitJobs,"
                     "GrpTRESMins,GrpTRES,MaxWall,Priority,QOS,DefaultQOS"), "where", C]
    assert qos == ["sacctmgr", "-n", "-P", "show", "qos", "format=Name,Priority,Flags"]
    assert users == ["sacctmgr", "-n", "-P", "show", "user", "format=User,DefaultAccount", "where", C]
    with pytest.raises(ValueError, match="cluster"):
        current_state_commands("carme dev")


def test_real_associations_without_limits():
    rows = parse_associations(fixture("show-assoc-22.05.txt"))
    assert [(r.account, r.user, r.parent) for r in rows[:3]] == [("root", "", ""), ("root", "root", ""),
                                                                  ("carme-dev", "", "root")]
    alice = rows[4]
    assert (alice.account, alice.user, alice.partition) == ("carme-dev", "alice", "")
    assert alice.assoc_fields() == dict.fromkeys(
        ["MaxTRESPerJob", "MaxJobs", "MaxSubmitJobs", "GrpTRESMins", "MaxWall", "Priority", "QOS", "DefaultQOS"])
    assert rows[0].qos == ("normal",) and all(r.qos == () for r in rows[1:])  # WOPLimits: nothing inherited


def test_real_qos_and_users():
    assert parse_qos(fixture("show-qos-22.05.txt")) == {"normal": 0}
    users = parse_users(fixture("show-user-22.05.txt"))
    assert users["alice"] == "carme-dev" and users["root"] == "root" and len(users) == 7


def test_associations_with_limits_as_22_05_prints_them():
    s = state()
    alice = s.associations[("alice", "carme-dev")]
    assert alice.max_tres_per_job == {"gres/gpu": 1} and alice.grp_tres_mins == {"gres/gpu": 6000}
    assert (alice.max_jobs, alice.max_submit_jobs, alice.max_wall_minutes, alice.priority) == (1, 1, 480, 10)
    assert (alice.qos, alice.default_qos) == (("carme-user",), "carme-user")
    assert s.associations[("bob", "carme-dev")].max_wall_minutes == 1440  # 1-00:00:00
    vision = s.accounts["proj-vision"]
    assert vision.account_fields() == {"Parent": "carme-dev", "GrpTRES": 8, "GrpTRESMins": 30000, "MaxWall": 2880}
    assert s.qos == {"normal": 0, "carme-user": 10, "carme-power": 20, "carme-admin": 30}


def test_hand_changed_forms():
    s = state("show-assoc-22.05-hand-changed-constructed.txt")
    bob = s.associations[("bob", "carme-dev")]
    assert bob.max_tres_per_job == {"cpu": 16, "gres/gpu": 4} and bob.assoc_fields()["MaxTRESPerJob"] == 4
    erin = s.associations[("erin", "carme-dev")]
    assert erin.qos == ("carme-user", "normal") and erin.assoc_fields()["QOS"] == "carme-user,normal"
    assert s.associations[("carol", "carme-dev")].max_jobs is None  # the partition row is not carol's own
    assert s.accounts["proj-vision"].grp_tres == {}


COLUMNS = ASSOC_FORMAT.split(",")


def line(**cells: str) -> str:
    """One `show assoc` line of user u in account a, the other columns empty."""
    return "|".join({"Cluster": "c", "Account": "a", "User": "u", **cells}.get(c, "") for c in COLUMNS) + "\n"


@pytest.mark.parametrize(("text", "problem"), [
    ("a|b\n", "line 1: 2 fields, expected 14"),
    (line() + line(MaxJobs="x"), "line 2 MaxJobs"),
    (line(MaxTRESPerJob="gres/gpu"), "MaxTRESPerJob: unparsable TRES piece"),
    (line(GrpTRESMins="gres/gpu=lots"), "GrpTRESMins"),
    (line(MaxWall="8h"), "MaxWall"),
    (line(Priority="-1"), "Priority"),
])
def test_malformed_association_lines_name_the_line_and_column(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_associations(text)


def test_wall_times_and_cleared_tres():
    [r] = parse_associations(line(MaxTRESPerJob="gres/gpu=NONE", MaxWall="366-00:00:00"))
    assert r.max_tres_per_job == {} and r.max_wall_minutes == 366 * 1440
    [r] = parse_associations(line(MaxWall="00:00:30"))
    assert r.max_wall_minutes == 1  # SLURM rounds seconds up to a minute


# ---- the plan --------------------------------------------------------------------------------------


def test_first_sync_creates_qos_accounts_and_associations():
    p = plan(desired(), state(**REAL), None)
    assert p.drift == []
    assert p.commands == [
        ["sacctmgr", "-i", "add", "qos", "name=carme-user", "Priority=10", "Flags=DenyOnLimit"],
        ["sacctmgr", "-i", "add", "qos", "name=carme-power", "Priority=20", "Flags=DenyOnLimit"],
        ["sacctmgr", "-i", "add", "qos", "name=carme-admin", "Priority=30", "Flags=DenyOnLimit"],
        ["sacctmgr", "-i", "add", "account", "name=proj-vision", C, "Description=Vision project",
         "Parent=carme-dev", "GrpTRES=gres/gpu=8", "GrpTRESMins=gres/gpu=30000", "MaxWall=2880"],
        ["sacctmgr", "-i", "modify", "user", "where", "user=alice", "account=carme-dev", C, "set",
         "MaxTRESPerJob=gres/gpu=1", "MaxJobs=1", "MaxSubmitJobs=1", "GrpTRESMins=gres/gpu=6000", "MaxWall=480",
         "Priority=10", "QOS=carme-user", "DefaultQOS=carme-user"],
        ["sacctmgr", "-i", "modify", "user", "where", "user=bob", "account=carme-dev", C, "set",
         "MaxTRESPerJob=gres/gpu=4", "MaxJobs=3", "MaxSubmitJobs=3", "GrpTRESMins=gres/gpu=60000",
         "MaxWall=1440", "Priority=20", "QOS=carme-power", "DefaultQOS=carme-power"],
        ["sacctmgr", "-i", "add", "user", "name=alice", "account=proj-vision", C, "MaxTRESPerJob=gres/gpu=2",
         "MaxJobs=1", "MaxSubmitJobs=1", "MaxWall=1440", "Priority=10", "QOS=carme-user", "DefaultQOS=carme-user"],
        ["sacctmgr", "-i", "add", "user", "name=bob", "account=proj-vision", C, "MaxTRESPerJob=gres/gpu=4",
         "MaxJobs=3", "MaxSubmitJobs=3", "MaxWall=2880", "Priority=20", "QOS=carme-power",
         "DefaultQOS=carme-power"],
    ]


def test_first_sync_on_an_empty_cluster_adds_the_root_account_and_new_users():
    empty = parse_state("", "", "")
    p = plan(desired(), empty, None)
    adds = [c[2:5] for c in p.commands]
    assert adds[3] == ["add", "account", "name=carme-dev"] and adds[4][:3] == ["add", "account", "name=proj-vision"]
    alice = p.commands[5]
    assert alice[2:8] == ["add", "user", "name=alice", "account=carme-dev", C, "DefaultAccount=carme-dev"]
    later = [c for c in p.commands if "account=proj-vision" in c]
    assert later and not any(a.startswith("DefaultAccount") for c in later for a in c)


def test_applied_state_gives_an_empty_plan():
    d = desired()
    assert plan(d, state(), d) == plan(d, state(), None) == Plan([], [])
    assert dry_run_text(plan(d, state(), d)) == "# SLURM already matches Carme's quota: no command\n"


CHANGES = [
    # (what changes in the desired state, the one command expected)
    ("gpus per job", {"alice": dataclasses.replace(ALICE, gpus_per_job=2)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxTRESPerJob=gres/gpu=2"]),
    ("servers", {"alice": dataclasses.replace(ALICE, max_servers=2)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxJobs=2", "MaxSubmitJobs=2"]),
    ("gpu hours, rounded to minutes", {"alice": dataclasses.replace(ALICE, gpu_hours=12.5)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "GrpTRESMins=gres/gpu=750"]),
    ("clearing the runtime", {"alice": dataclasses.replace(ALICE, max_runtime_minutes=None)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxWall=-1"]),
    ("clearing gpus and priority", {"alice": dataclasses.replace(ALICE, gpus_per_job=None, priority=None)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxTRESPerJob=gres/gpu=-1",
      "Priority=-1"]),
    ("clearing servers and gpu hours", {"alice": dataclasses.replace(ALICE, max_servers=None, gpu_hours=None)},
     ["modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxJobs=-1", "MaxSubmitJobs=-1",
      "GrpTRESMins=gres/gpu=-1"]),
    ("jobs per day is Carme's own", {"alice": dataclasses.replace(ALICE, jobs_per_day=50)}, None),
    ("project gpus at once", {"vision": dataclasses.replace(VISION, gpus_at_once=16)},
     ["modify", "account", "where", "account=proj-vision", C, "set", "GrpTRES=gres/gpu=16"]),
    ("project budget cleared", {"vision": dataclasses.replace(VISION, gpu_hours=None)},
     ["modify", "account", "where", "account=proj-vision", C, "set", "GrpTRESMins=gres/gpu=-1"]),
]


@pytest.mark.parametrize(("change", "command"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_value_is_one_modify_with_only_that_field(change, command):
    p = plan(desired(**change), state(), desired())
    assert p.drift == []
    assert p.commands == ([["sacctmgr", "-i", *command]] if command else [])


def test_a_role_change_moves_qos_and_default_qos_together():
    d = desired()
    assocs = dict(d.associations)
    assocs[("alice", "carme-dev")] = AssocSpec(ALICE, role_qos(ADMIN), default_account=True)
    p = plan(dataclasses.replace(d, associations=assocs), state(), d)
    assert p.commands == [["sacctmgr", "-i", "modify", "user", "where", "user=alice", "account=carme-dev", C,
                           "set", "QOS=carme-admin", "DefaultQOS=carme-admin"]]


def test_a_role_priority_change_modifies_the_qos():
    d = desired()
    p = plan(dataclasses.replace(d, qos={**d.qos, role_qos(POWER): 25}), state(), d)
    assert p.commands == [["sacctmgr", "-i", "modify", "qos", "where", "name=carme-power", "set", "Priority=25"]]


def test_a_new_project_adds_the_account_then_its_members():
    d = desired()
    accounts = {**d.accounts, "proj-nlp": AccountSpec("carme-dev", gpus_at_once=4)}
    assocs = {**d.associations, ("bob", "proj-nlp"): AssocSpec(Limits(gpus_per_job=2), role_qos(POWER))}
    p = plan(dataclasses.replace(d, accounts=accounts, associations=assocs), state(), d)
    assert p.commands == [
        ["sacctmgr", "-i", "add", "account", "name=proj-nlp", C, "Parent=carme-dev", "GrpTRES=gres/gpu=4"],
        ["sacctmgr", "-i", "add", "user", "name=bob", "account=proj-nlp", C, "MaxTRESPerJob=gres/gpu=2",
         "QOS=carme-power", "DefaultQOS=carme-power"],
    ]


def test_a_sub_project_is_added_after_its_parent():
    d = desired()
    accounts = {"proj-sub": AccountSpec("proj-top"), **d.accounts, "proj-top": AccountSpec("carme-dev")}
    p = plan(dataclasses.replace(d, accounts=accounts), state(), d)
    assert [c[4] for c in p.commands] == ["name=proj-top", "name=proj-sub"]


def test_a_new_default_account_for_an_existing_user_is_its_own_command():
    d = desired()
    assocs = dict(d.associations)
    assocs[("alice", "carme-dev")] = dataclasses.replace(assocs[("alice", "carme-dev")], default_account=False)
    assocs[("alice", "proj-vision")] = dataclasses.replace(assocs[("alice", "proj-vision")], default_account=True)
    p = plan(dataclasses.replace(d, associations=assocs), state(), d)
    assert p.commands == [["sacctmgr", "-i", "modify", "user", "where", "name=alice", C, "set",
                           "DefaultAccount=proj-vision"]]


# ---- drift -----------------------------------------------------------------------------------------


HAND = {"assoc": "show-assoc-22.05-hand-changed-constructed.txt"}


def test_drift_is_reported_and_not_overwritten():
    d = desired()
    p = plan(d, state(**HAND), d)
    assert p.drift == [
        Drift("account proj-vision", "GrpTRES", None, 8, False),
        Drift("association alice in carme-dev", "MaxJobs", 5, 1, False),
    ]
    assert p.commands == []  # bob's extra cpu=16 is not Carme's field; carol's partition row is not Carme's
    text = dry_run_text(p)
    assert "# drift: association alice in carme-dev: MaxJobs is 5 in SLURM, Carme wants 1; kept" in text
    assert "GrpTRES is unset in SLURM, Carme wants gres/gpu=8" in text


def test_drift_is_overwritten_with_the_flag():
    d = desired()
    p = plan(d, state(**HAND), d, overwrite_drift=True)
    assert [x.overwritten for x in p.drift] == [True, True]
    assert p.commands == [
        ["sacctmgr", "-i", "modify", "account", "where", "account=proj-vision", C, "set", "GrpTRES=gres/gpu=8"],
        ["sacctmgr", "-i", "modify", "user", "where", "user=alice", "account=carme-dev", C, "set", "MaxJobs=1"],
    ]
    assert "overwritten by this plan" in dry_run_text(p)


def test_a_policy_change_goes_through_beside_drift_on_another_field():
    p = plan(desired(alice=dataclasses.replace(ALICE, priority=15)), state(**HAND), desired())
    assert [(x.what, x.field) for x in p.drift] == [("account proj-vision", "GrpTRES"),
                                                    ("association alice in carme-dev", "MaxJobs")]
    assert p.commands == [["sacctmgr", "-i", "modify", "user", "where", "user=alice", "account=carme-dev", C,
                           "set", "Priority=15"]]


def test_a_hand_change_to_what_carme_now_wants_is_no_drift():
    p = plan(desired(alice=dataclasses.replace(ALICE, max_servers=5)), state(**HAND), desired())
    assert ("association alice in carme-dev", "MaxJobs") not in [(x.what, x.field) for x in p.drift]
    assert ["sacctmgr", "-i", "modify", "user", "where", "user=alice", "account=carme-dev", C, "set",
            "MaxSubmitJobs=5"] in p.commands


def test_at_first_sync_a_limit_set_before_carme_is_drift():
    """Carme never applied anything: L is unset, so a value SLURM already has is somebody's."""
    p = plan(desired(alice=dataclasses.replace(ALICE, max_servers=2)), state(), None)
    assert Drift("association alice in carme-dev", "MaxJobs", 1, 2, False) in p.drift
    assert not any("MaxJobs=2" in c for c in p.commands)


def test_drift_on_qos_priority_and_default_account():
    d = desired()
    qos_text = fixture("show-qos-22.05-roles-constructed.txt").replace("carme-user|10", "carme-user|99")
    users_text = fixture("show-user-22.05.txt").replace("alice|carme-dev", "alice|proj-vision")
    p = plan(d, parse_state(fixture("show-assoc-22.05-limits-constructed.txt"), qos_text, users_text), d)
    assert p.drift == [Drift("qos carme-user", "Priority", 99, 10, False),
                       Drift("user alice", "DefaultAccount", "proj-vision", "carme-dev", False)]
    assert p.commands == []


def test_names_are_compared_ignoring_case():
    d = desired()
    upper = fixture("show-assoc-22.05-limits-constructed.txt").replace("proj-vision", "PROJ-VISION")
    assert plan(d, parse_state(upper, fixture("show-qos-22.05-roles-constructed.txt"),
                               fixture("show-user-22.05.txt")), d).commands == []


# ---- validation ------------------------------------------------------------------------------------


BAD = [
    ({"cluster": "carme dev"}, "cluster"),
    ({"root_account": "-root"}, "root_account"),
    ({"qos": {"carme user": 1}}, "qos"),
    ({"qos": {"carme-user": -1}}, r"qos\[carme-user\].priority"),
    ({"qos": {"carme-user": True}}, r"qos\[carme-user\].priority"),
    ({"accounts": {"proj;rm": AccountSpec("carme-dev")}}, "accounts"),
    ({"accounts": {"p": AccountSpec("carme-dev x")}}, r"accounts\[p\].parent"),
    ({"accounts": {"p": AccountSpec("elsewhere")}}, r"accounts\[p\].parent"),
    ({"accounts": {"p": AccountSpec("q"), "q": AccountSpec("p")}}, "cycle"),
    ({"accounts": {"root": AccountSpec("carme-dev")}}, r"accounts\[root\]"),
    ({"accounts": {"p": AccountSpec("carme-dev", description="it's")}}, r"accounts\[p\].description"),
    ({"associations": {("al ice", "carme-dev"): AssocSpec(Limits(), "carme-user")}}, "associations user"),
    ({"associations": {("alice", "a=b"): AssocSpec(Limits(), "carme-user")}}, "associations account"),
    ({"associations": {("alice", "nowhere"): AssocSpec(Limits(), "carme-user")}}, "account"),
    ({"associations": {("alice", "carme-dev"): AssocSpec(Limits(), "normal")}}, r"\.qos"),
    ({"associations": {("alice", "carme-dev"): AssocSpec({"gpus_per_job": 1}, "carme-user")}}, r"\.limits"),
    ({"associations": {"alice": AssocSpec(Limits(), "carme-user")}}, "pair"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[b[1] for b in BAD])
def test_bad_values_are_refused_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        desired(**change)


def test_two_default_accounts_for_one_user_are_refused():
    assocs = dict(desired().associations)
    assocs[("alice", "proj-vision")] = AssocSpec(Limits(), role_qos(USER), default_account=True)
    with pytest.raises(ValueError, match="default_account"):
        desired(associations=assocs)


def test_the_desired_state_cannot_be_changed_after_its_checks():
    d = desired()
    with pytest.raises(TypeError):
        d.accounts["evil;x"] = AccountSpec("carme-dev")  # type: ignore[index]


def test_dry_run_text_is_shell_quoted_one_command_per_line():
    p = plan(desired(), state(**REAL), None)
    lines = dry_run_text(p).splitlines()
    assert len(lines) == len(p.commands)
    assert lines[3].startswith("sacctmgr -i add account name=proj-vision cluster=carme-dev "
                               "'Description=Vision project' ")
    assert [shlex.split(line) for line in lines] == p.commands


def test_project_limits_are_checked_naming_the_field():
    with pytest.raises(ValueError, match="gpus_at_once"):
        AccountSpec("carme-dev", gpus_at_once=-1)
    with pytest.raises(ValueError, match="gpu_hours"):
        AccountSpec("carme-dev", gpu_hours=float("nan"))


def test_every_argv_value_is_checked_again_when_the_command_is_built():
    d = desired()
    object.__setattr__(d, "cluster", "carme-dev;rm")  # past the dataclass's own checks
    with pytest.raises(ValueError, match="cluster"):
        plan(d, state(), None)
    tampered = dataclasses.replace(desired(), qos={role_qos(r): 10 for r in ROLES})
    object.__setattr__(tampered, "qos", {"carme-user": "10 Flags=DenyOnLimit"})
    with pytest.raises(ValueError, match="Priority"):
        plan(tampered, parse_state("", "", ""), None)


def test_a_desired_state_survives_its_json_form():
    import json

    state = desired()
    assert DesiredState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_a_role_qos_without_deny_on_limit_gets_it_so_slurm_refuses_jobs_over_a_limit_at_submission():
    qos_text = fixture("show-qos-22.05-roles-constructed.txt").replace("carme-power|20|DenyOnLimit", "carme-power|20|")
    current = parse_state(fixture("show-assoc-22.05-limits-constructed.txt"), qos_text, fixture("show-user-22.05.txt"))
    p = plan(desired(), current, desired())
    assert ["sacctmgr", "-i", "modify", "qos", "where", "name=carme-power", "set", "Flags+=DenyOnLimit"] in p.commands
