"""Tests for container_catalog.user_entries: adding, storing and disabling user-defined entries."""

import os
import stat
import threading
from pathlib import Path

import pytest
import yaml

from container_catalog import (
    UserEntryConflict,
    UserEntryError,
    UserEntryForbidden,
    UserEntryNotFound,
    add_user_entry,
    check_user_image_reference,
    disable_user_entry,
    load_catalog,
    enable_user_entry,
)
from container_catalog import user_entries

SCHEMES = ("file", "docker")
PREFIXES = ("/opt/carme/images/", "/home/alice", "docker://nvcr.io/")
DATA = {"id": "mytorch", "name": "My PyTorch", "image": "/home/alice/images/torch.sif",
        "tags": {"framework": "pytorch", "cuda": "12.4"}, "gpu": "required"}


def add(store, owner="alice", data=None, **kw):
    kw.setdefault("allowed_schemes", SCHEMES)
    kw.setdefault("allowed_prefixes", PREFIXES)
    return add_user_entry(store, owner, DATA if data is None else data, **kw)


def enable(store, owner, entry_id, **kw):
    kw.setdefault("allowed_schemes", SCHEMES)
    kw.setdefault("allowed_prefixes", PREFIXES)
    return enable_user_entry(store, owner, entry_id, **kw)


def error_of(store, data, error=UserEntryError, **kw) -> UserEntryError:
    with pytest.raises(error) as info:
        add(store, data=data, **kw)
    return info.value


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --- adding ---------------------------------------------------------------------------------------

def test_add_to_own_section_writes_one_file_0644(tmp_path):
    entry = add(tmp_path)
    path = tmp_path / "users" / "alice" / "mytorch.yaml"
    assert entry.source == str(path)
    assert (entry.section, entry.owner, entry.enabled) == ("user", "alice", True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "users" / "alice").stat().st_mode) == 0o755
    assert listing(path.parent) == ["mytorch.yaml"]  # no temporary file left behind
    stored = yaml.safe_load(path.read_text())
    assert stored["owner"] == "alice" and stored["section"] == "user" and stored["tags"]["cuda"] == "12.4"


def test_added_entry_loads_and_is_visible_only_to_its_owner(tmp_path):
    add(tmp_path / "store")
    catalog = load_catalog(tmp_path / "site-missing-is-ok", tmp_path / "store")
    assert [p.field for p in catalog.problems] == ["directory"]
    assert catalog.visible_to("power", "alice").get("mytorch", "alice").image == DATA["image"]
    assert catalog.visible_to("power", "bob").get("mytorch", "bob") is None


def test_add_to_shared_section_records_the_owner(tmp_path):
    entry = add(tmp_path, shared=True)
    assert (entry.section, entry.owner, entry.choice_id) == ("shared", "alice", "alice/mytorch")
    assert entry.source == str(tmp_path / "shared" / "alice" / "mytorch.yaml")
    catalog = load_catalog(tmp_path / "site", tmp_path)
    assert catalog.visible_to("user", "bob").get("alice/mytorch", "bob").owner == "alice"
    assert catalog.visible_to("user", "bob").get("mytorch", "bob") is None


def test_ids_are_unique_per_section(tmp_path):
    add(tmp_path)
    error = error_of(tmp_path, DATA, UserEntryConflict)
    assert error.field == "id" and "already exists in the section of alice" in error.message
    add(tmp_path, owner="bob")  # another user's section
    add(tmp_path, shared=True)  # the shared section
    error = error_of(tmp_path, DATA, UserEntryConflict, shared=True)
    assert "already exists in the shared section of alice" in error.message
    add(tmp_path, owner="bob", shared=True)  # another owner's shared `mytorch`: "bob/mytorch"


def test_site_ids_are_reserved(tmp_path):
    error = error_of(tmp_path, DATA, UserEntryConflict, reserved_ids={"mytorch", "other"})
    assert error.field == "id" and "already used by the site catalog" in error.message
    assert not (tmp_path / "users" / "alice" / "mytorch.yaml").exists()


def test_section_size_is_bounded(tmp_path):
    for i in range(3):
        add(tmp_path, data={**DATA, "id": f"e{i}"}, max_entries=3)
    assert "at most 3" in error_of(tmp_path, {**DATA, "id": "e3"}, max_entries=3).message


def test_concurrent_adds_of_one_id_have_one_winner(tmp_path):
    results = []

    def attempt(i):
        try:
            add(tmp_path, data={**DATA, "name": f"Attempt {i}"})
            results.append("ok")
        except UserEntryConflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    assert listing(tmp_path / "users" / "alice") == ["mytorch.yaml"]


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_link(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(user_entries.os, "link", broken_link)
    with pytest.raises(OSError):
        add(tmp_path)
    assert listing(tmp_path / "users" / "alice") == []


# --- validation: the same schema, plus the stricter image rules -------------------------------------

@pytest.mark.parametrize("data, field, rule", [
    ({**DATA, "id": "My Torch"}, "id", "must be a slug"),
    ({**DATA, "name": ""}, "name", "must not be empty"),
    ({**DATA, "env": {"LD_PRELOAD": "/x.so"}}, "env", "set by the site catalog only"),
    ({**DATA, "colour": "red"}, "colour", "unknown field"),
    ({**DATA, "owner": "bob"}, "owner", "set by Carme"),
    ({**DATA, "section": "shared"}, "section", "set by Carme"),
    (["not", "a", "mapping"], "entry", "must be a mapping"),
])
def test_the_schema_applies(tmp_path, data, field, rule):
    error = error_of(tmp_path, data)
    assert error.field == field and rule in error.message
    assert error.problems[0].path == "<new user entry>"
    assert not (tmp_path / "users" / "alice").exists() or listing(tmp_path / "users" / "alice") == []


def test_every_problem_is_listed(tmp_path):
    error = error_of(tmp_path, {"id": "X", "name": "", "image": "/home/alice/x.sif"})
    assert [p.field for p in error.problems] == ["id", "name"]


@pytest.mark.parametrize("image, rule", [
    ("oras://ghcr.io/x/y:1",
     "oras:// is not allowed for user-defined images; allowed: an absolute .sif path, docker://"),
    ("library://x/y/z:1", "library:// is not allowed"),
    ("/opt/other/x.sif", "must start with one of the allowed prefixes"),
    ("/home/alice2/x.sif", "must start with one of the allowed prefixes"),  # prefix only at a boundary
    ("/opt/carme/imagesx/x.sif", "must start with one of the allowed prefixes"),
    ("docker://docker.io/evil/img:1", "must start with one of the allowed prefixes"),
    ("docker://nvcr.io.evil.com/x:1", "must start with one of the allowed prefixes"),
    ("/home/alice/../bob/x.sif", "must not contain '..'"),
    ("/home/alice/a..b.sif", "must not contain '..'"),
    ("docker://nvcr.io/../x:1", "must not contain '..'"),
    ("/home/alice/x.img", "absolute path ending in .sif"),
    ("/home/alice/x.sif\n", "must not contain a newline"),
    ("/home/alice/x\r.sif", "must not contain a carriage return"),
    ("/home/alice/x .sif", "must not contain a space"),
    ("/home/alice/x\x00.sif", "control character 0x00"),
] + [(f"/home/alice/x{c}y.sif", f"must not contain {c!r}") for c in "$;|&`()<>\\'\"*?[]{}~!#"])
def test_stricter_image_rules(tmp_path, image, rule):
    error = error_of(tmp_path, {**DATA, "image": image})
    assert error.field == "image" and rule in error.message, error.message


@pytest.mark.parametrize("image", [
    "/opt/carme/images/pytorch-gpu.sif", "/home/alice/x.sif", "/home/alice/deep/dir/x.sif",
    "docker://nvcr.io/nvidia/pytorch:24.05-py3", "docker://nvcr.io/nvidia/pytorch@sha256:0a1b",
])
def test_allowed_images(tmp_path, image):
    assert add(tmp_path, data={**DATA, "image": image}).image == image


def test_prefix_rules():
    ok = check_user_image_reference
    assert ok("docker://ubuntu:24.04", ["docker"], ["docker://"]) == "docker://ubuntu:24.04"
    assert ok("docker://nvcr.io:5000/x:1", ["docker"], ["docker://nvcr.io"])
    assert ok("/data/img.sif", ["file"], ["/data/img.sif"])
    with pytest.raises(ValueError, match="none .the site allows no user-defined images"):
        ok("/data/img.sif", ["file"], [])
    with pytest.raises(ValueError, match="allowed: none"):
        ok("/data/img.sif", [], ["/data/"])
    with pytest.raises(ValueError, match="allowed_schemes"):
        ok("/data/img.sif", ["http"], ["/data/"])


@pytest.mark.parametrize("owner", ["", "Alice", "../bob", "a/b", "a b", None, "x" * 40])
def test_owner_must_be_a_posix_user_name(tmp_path, owner):
    with pytest.raises(UserEntryError) as info:
        add(tmp_path, owner=owner)
    assert info.value.field == "owner"
    assert list(tmp_path.iterdir()) == []


def test_schemes_and_prefixes_must_be_given(tmp_path):
    with pytest.raises(TypeError):
        add_user_entry(tmp_path, "alice", DATA)


# --- disabling --------------------------------------------------------------------------------------

def test_disable_own_entry(tmp_path):
    add(tmp_path)
    path = tmp_path / "users" / "alice" / "mytorch.yaml"
    inode = path.stat().st_ino
    entry = disable_user_entry(tmp_path, "alice", "mytorch")
    assert entry.enabled is False
    assert path.stat().st_ino != inode  # replaced, not rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert listing(path.parent) == ["mytorch.yaml"]
    assert yaml.safe_load(path.read_text())["enabled"] is False
    catalog = load_catalog(tmp_path / "site", tmp_path)
    assert catalog.get("mytorch", "alice").enabled is False
    assert catalog.visible_to("admin", "alice").get("mytorch") is None
    assert disable_user_entry(tmp_path, "alice", "mytorch").enabled is False  # idempotent
    assert error_of(tmp_path, DATA, UserEntryConflict).field == "id"  # the id stays taken
    assert enable(tmp_path, "alice", "mytorch").enabled is True
    assert load_catalog(tmp_path / "site", tmp_path).visible_to("power", "alice").get("mytorch", "alice")


def test_disable_shared_entry_only_by_owner_or_admin(tmp_path):
    add(tmp_path, shared=True)
    with pytest.raises(UserEntryForbidden) as info:
        disable_user_entry(tmp_path, "alice", "mytorch", shared=True, caller="bob")
    assert info.value.field == "owner" and "belongs to alice" in info.value.message
    with pytest.raises(UserEntryNotFound):
        disable_user_entry(tmp_path, "bob", "mytorch", shared=True)  # bob shares no `mytorch`
    entry = disable_user_entry(tmp_path, "alice", "mytorch", shared=True, caller="bob", admin=True)
    assert entry.enabled is False
    assert enable(tmp_path, "alice", "mytorch", shared=True, caller="alice").owner == "alice"


@pytest.mark.parametrize("entry_id", ["nope", "../users/bob/x", "X"])
def test_disable_unknown_entry(tmp_path, entry_id):
    add(tmp_path)
    with pytest.raises(UserEntryNotFound) as info:
        disable_user_entry(tmp_path, "alice", entry_id)
    assert info.value.field == "id"
    with pytest.raises(UserEntryNotFound):
        disable_user_entry(tmp_path, "bob", "mytorch")  # alice's entry is not in bob's section


def test_disable_refuses_a_tampered_file(tmp_path):
    add(tmp_path)
    path = tmp_path / "users" / "alice" / "mytorch.yaml"
    path.write_text(path.read_text().replace("owner: alice", "owner: bob"))
    with pytest.raises(UserEntryError) as info:
        disable_user_entry(tmp_path, "alice", "mytorch")
    assert info.value.field == "owner" and "stored entry is invalid" in info.value.message


def test_enable_checks_the_image_against_todays_rules(tmp_path):
    add(tmp_path)
    disable_user_entry(tmp_path, "alice", "mytorch")
    with pytest.raises(UserEntryError) as info:
        enable(tmp_path, "alice", "mytorch", allowed_prefixes=("/opt/carme/images/",))
    assert info.value.field == "image" and "allowed prefixes" in info.value.message
    assert load_catalog(tmp_path / "site", tmp_path).get("mytorch", "alice").enabled is False
