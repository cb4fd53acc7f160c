"""Issue 20, mounts (pure): the site's file systems per role, hub group and quota project, checked once;
bad settings name the entry and key; a missing required source is named; binds reach the builder."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from carme_spawner.accounts import JobAccount
from carme_spawner.mounts import MountMissing, bind_specs, missing_sources, mounts_for, parse_mounts
from carme_spawner.settings import CarmeSpawnerSettings

SITE = [
    {"source": "/beegfs/home/{username}", "target": "/home/{username}"},
    {"source": "/beegfs/datasets", "target": "/datasets", "read_only": True},
    {"source": "/beegfs/projects/vision", "target": "/projects/vision", "projects": ["vision"]},
    {"source": "/beegfs/groups/optics", "target": "/groups/optics", "groups": ["optics"]},
    {"source": "/beegfs/admin", "target": "/admin", "roles": ["admin"]},
    {"source": "/opt/licenses", "target": "/licenses", "read_only": True, "required": False},
]
FILL = {"username": "alice", "home": "/home/alice"}


def targets(role="user", groups=(), projects=()):
    return [m.target for m in mounts_for(parse_mounts(SITE), role, groups, projects, FILL)]


def test_each_user_gets_the_mounts_of_their_role_groups_and_projects():
    assert targets() == ["/home/alice", "/datasets", "/licenses"]
    assert "/projects/vision" in targets(projects=["vision"]) and "/projects/vision" not in targets(projects=["nlp"])
    assert "/groups/optics" in targets(groups=["optics"]) and "/admin" in targets(role="admin")


def test_binds_are_specs_and_an_optional_missing_one_is_left_out():
    mounts = mounts_for(parse_mounts(SITE), "user", (), (), FILL)
    present = {"/beegfs/home/alice", "/beegfs/datasets"}
    assert bind_specs(mounts, exists=present.__contains__) == ("/beegfs/home/alice:/home/alice:rw",
                                                              "/beegfs/datasets:/datasets:ro")
    assert missing_sources(mounts, exists=present.__contains__) == []
    assert missing_sources(mounts, exists=lambda p: False) == ["/beegfs/home/alice", "/beegfs/datasets"]


@pytest.mark.parametrize("entry, words", [
    ({"source": "data", "target": "/data"}, "CarmeSpawner.mounts[0].source: must be an absolute path"),
    ({"source": "/beegfs/../etc", "target": "/data"}, "CarmeSpawner.mounts[0].source: must not contain '..'"),
    ({"source": "/beegfs/tools", "target": "/usr"}, "CarmeSpawner.mounts[0].target: must not be /usr"),
    ({"source": "/beegfs/tools", "target": "/usr/local/tools"}, "must not be /usr or below it"),
    ({"source": "/beegfs/x", "target": "/proc"}, "must not be /proc"),
    ({"source": "/beegfs/x"}, "CarmeSpawner.mounts[0].target: is required"),
    ({"source": "/beegfs/x", "target": "/x", "mode": "ro"}, "unknown key mode"),
    ({"source": "/beegfs/x", "target": "/x", "read_only": "yes"}, "read_only: must be true or false"),
    ({"source": "/beegfs/{group}", "target": "/x"}, "only {username} and {home}"),
    ({"source": "/beegfs/x", "target": "/x", "roles": ["root"]}, "roles: unknown root"),
    ({"source": "/a,b", "target": "/x"}, "comma"),
])
def test_bad_mount_settings_name_the_entry_and_key(entry, words):
    with pytest.raises(ValueError) as e:
        parse_mounts([entry])
    assert words in str(e.value)


def test_the_spawners_setting_refuses_bad_mounts_when_the_hub_starts():
    with pytest.raises(TraitError, match=r"mounts\[0\].target: must not be /usr"):
        CarmeSpawnerSettings(mounts=[{"source": "/x", "target": "/usr"}])
    with pytest.raises(TraitError, match="is the target of an earlier mount"):
        CarmeSpawnerSettings(mounts=[{"source": "/x", "target": "/d"}, {"source": "/y", "target": "/d"}])


def test_a_missing_required_mount_is_named(tmp_path):
    here = tmp_path / "datasets"
    here.mkdir()
    settings = CarmeSpawnerSettings(mounts=[{"source": str(here), "target": "/datasets"},
                                            {"source": str(tmp_path / "gone"), "target": "/gone"}])
    alice = JobAccount("alice", 10001, 10000, "/home/alice", "user")
    with pytest.raises(MountMissing, match=f"{tmp_path / 'gone'} is not there"):
        settings.mount_binds(alice, (), ())
    settings.mounts = [{"source": str(here), "target": "/datasets"}]
    assert settings.mount_binds(alice, (), ()) == (f"{here}:/datasets:rw",)


def test_a_user_name_cannot_move_a_mount_out_of_its_place():
    mounts = parse_mounts([{"source": "/beegfs/home/{username}", "target": "/home/{username}"}])
    with pytest.raises(ValueError, match="must not contain '..'"):
        mounts_for(mounts, "user", (), (), {"username": "..", "home": "/home/x"})
