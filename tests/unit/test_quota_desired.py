"""carme_quota.desired: the policy as the DesiredState the sync compares with SLURM."""

from __future__ import annotations

from carme_quota.desired import ProjectPolicy, desired_state
from carme_quota.limits import Limits, ProjectTemplate

DEFAULTS = {"user": Limits(max_servers=1, gpus_per_job=1, gpu_hours=100, priority=5), "power": Limits(max_servers=3)}


def test_every_user_in_the_site_account_with_their_roles_qos_and_effective_limits():
    state = desired_state("c", "lab", DEFAULTS, {"alice": "user", "bob": "power", "carol": "admin"},
                          {"alice": Limits(gpus_per_job=2)}, [])
    alice = state.associations[("alice", "lab")]
    assert alice.limits == Limits(gpus_per_job=2, max_servers=1, gpu_hours=100, priority=5)
    assert alice.qos == "carme-user" and alice.default_account
    assert state.associations[("bob", "lab")].limits == Limits(max_servers=3)
    assert state.associations[("carol", "lab")].limits == Limits()  # no admin defaults: no limits
    assert state.qos == {"carme-user": 5, "carme-power": 0, "carme-admin": 0}


def test_a_project_is_an_account_with_its_template_and_its_members_associations():
    vision = ProjectPolicy("vision", ProjectTemplate(gpus_at_once=4, gpus_per_job=2, gpu_hours=500), ("alice", "zed"))
    state = desired_state("c", "lab", DEFAULTS, {"alice": "user"}, {}, [vision])
    account = state.accounts["vision"]
    assert (account.parent, account.gpus_at_once, account.gpu_hours) == ("lab", 4, 500)
    member = state.associations[("alice", "vision")]
    assert member.limits == Limits(gpus_per_job=2, max_servers=1, priority=5)  # the project's budget, not hers
    assert not member.default_account
    assert state.associations[("zed", "vision")].qos == "carme-user"  # unknown to the hub: the user role


def test_a_name_slurm_cannot_take_is_left_out_not_everyones_sync_stopped():
    vision = ProjectPolicy("vision", ProjectTemplate(), ("bob@example.org", "alice"))
    state = desired_state("c", "lab", DEFAULTS, {"alice": "user", "bob@example.org": "user"}, {}, [vision])
    assert set(state.associations) == {("alice", "lab"), ("alice", "vision")}
