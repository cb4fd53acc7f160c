"""carme_core.roles: the one rule that decides a user's role, from the hub's admin flag and groups."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from carme_core.roles import ROLES, CarmeRoles, check_role, role_from_hub, role_of_model


def test_admin_flag_then_power_groups_then_user():
    assert role_from_hub(True, [], ["power"]) == "admin"
    assert role_from_hub(False, ["power", "other"], ["power"]) == "power"
    assert role_from_hub(False, ["other"], ["power"]) == "user"
    assert role_from_hub(False, ["gpu-users"], ["power", "gpu-users"]) == "power"


def test_the_hub_model_decides_like_the_hub():
    assert role_of_model({"name": "a", "admin": True, "groups": []}, ["power"]) == "admin"
    assert role_of_model({"name": "d", "groups": ["power"]}, ["power"]) == "power"
    assert role_of_model({"name": "e"}, ["power"]) == "user"  # a token without read:users:groups sees no groups


def test_power_groups_are_a_setting():
    assert CarmeRoles().power_groups == ["power"]
    assert CarmeRoles(config=Config({"CarmeRoles": {"power_groups": ["x"]}})).power_groups == ["x"]


def test_check_role():
    assert [check_role(r) for r in ROLES] == list(ROLES)
    with pytest.raises(ValueError, match="not one of user, power, admin"):
        check_role("root")
