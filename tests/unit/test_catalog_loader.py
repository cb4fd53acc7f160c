"""Tests for container_catalog's loader (site directory, user store) and watcher (reload on change)."""

import asyncio
import os
import threading
from pathlib import Path

import pytest

from container_catalog import EXAMPLE_CATALOG, Catalog, CatalogSource, load_catalog, read_entries_file

GOOD = "id: {id}\nname: {name}\nimage: /opt/carme/images/{id}.sif\n"


def write(path: Path, text: str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def good(directory: Path, id_: str, name: str | None = None, filename: str | None = None, **kw) -> Path:
    return write(directory / (filename or f"{id_}.yaml"), GOOD.format(id=id_, name=name or id_.title()), **kw)


def ids(catalog: Catalog) -> set[str]:
    return {e.id for e in catalog}


def problem_map(catalog: Catalog) -> dict[tuple[str, str], str]:
    return {(Path(p.path).name, p.field): p.message for p in catalog.problems}


# --- the shipped example catalog -----------------------------------------------------------------

def test_example_catalog_loads_without_problems():
    catalog = load_catalog(EXAMPLE_CATALOG)
    assert catalog.problems == ()
    assert ids(catalog) == {"python-cpu", "pytorch-gpu", "tensorflow-gpu", "jax-gpu", "rapids-gpu",
                            "ngc-pytorch", "code-server-cpu"}
    runnable = {e.id: e.image for e in catalog if e.runnable}
    assert runnable == {n: f"/opt/carme/images/{n}.sif"
                        for n in ("python-cpu", "pytorch-gpu", "tensorflow-gpu", "jax-gpu", "rapids-gpu")}
    assert catalog.get("ngc-pytorch").image.startswith("docker://") and not catalog.get("ngc-pytorch").enabled
    assert catalog.get("rapids-gpu").roles == ("power", "admin")
    assert catalog.get("pytorch-gpu").tag("framework") == "pytorch"
    assert catalog.get("pytorch-gpu").tag("cuda") == "12.4"
    assert all(e.maintainer for e in catalog)
    assert {e.gpu for e in catalog} == {"required", "optional", "none"}
    assert "rapids-gpu" not in ids(catalog.visible_to("user"))
    assert "rapids-gpu" in ids(catalog.visible_to("power"))


def test_example_images_exist_on_the_dev_machine():
    images = Path("/opt/carme/images")
    assert images.is_dir(), "the dev images are missing: run `make test` (dev/install.sh creates them)"
    for entry in load_catalog(EXAMPLE_CATALOG):
        if entry.runnable:
            assert Path(entry.image).is_file(), entry.image
            assert not entry.binds  # bind sources must exist on the nodes; the demo has none


# --- one bad file never hides the good ones ------------------------------------------------------

@pytest.mark.parametrize("text, field, message", [
    ("id: [unclosed\n", "file", "is not valid YAML at line 2, column 1"),
    ("", "file", "is empty: expected one entry"),
    ("# only a comment\n", "file", "is empty"),
    ("- id: x\n", "entry", "must be a mapping"),
    ("just text\n", "entry", "must be a mapping"),
    ("id: bad\nname: x\nimage: /a.sif\nname: y\n", "file", "key 'name' is given twice"),
    ("id: BAD\nname: x\nimage: /a.sif\n", "id", "must be a slug"),
    ("id: ok\nname: x\nimage: /a.sif\ngpu: maybe\n", "gpu", "must be one of required, optional, none"),
    ("id: ok\nname: x\nimage: /a.sif\ncolour: red\n", "colour", "unknown field"),
    ("id: ok\nname: x\nimage: /a.sif\ntags: {cuda: 12.10}\n", "tags.cuda", "YAML reads 12.10 as 12.1"),
    ("id: ok\nname: x\nimage: /a.sif\ncreated: 2024-01-01\n", "created", "unknown field"),
    ("id: ok\nname: !!python/object:os.system x\nimage: /a.sif\n", "file", "is not valid YAML"),
    ("? [a, b]\n: c\n", "file", "is not valid YAML"),
])
def test_bad_file_is_reported_and_the_rest_load(tmp_path, text, field, message):
    good(tmp_path, "alpha")
    write(tmp_path / "broken.yaml", text)
    good(tmp_path, "zeta")
    catalog = load_catalog(tmp_path)
    assert ids(catalog) == {"alpha", "zeta"}
    assert len(catalog.problems) == 1
    problem = catalog.problems[0]
    assert (problem.path, problem.field) == (str(tmp_path / "broken.yaml"), field)
    assert message in problem.message


def test_unreadable_non_utf8_and_huge_files(tmp_path):
    good(tmp_path, "alpha")
    (tmp_path / "latin1.yaml").write_bytes("name: Caf\xe9\n".encode("latin-1"))
    write(tmp_path / "huge.yaml", "description: " + "x" * (1024 * 1024) + "\n")
    os.symlink(tmp_path / "missing-target.yaml", tmp_path / "dangling.yaml")
    catalog = load_catalog(tmp_path)
    problems = problem_map(catalog)
    assert ids(catalog) == {"alpha"}
    assert "not UTF-8 text (bad byte at offset 9)" in problems[("latin1.yaml", "file")]
    assert "larger than 1048576 bytes" in problems[("huge.yaml", "file")]
    assert ("dangling.yaml", "file") not in problems  # not a regular file: not a catalog file


def test_only_visible_yaml_files_of_the_directory_itself(tmp_path):
    good(tmp_path, "alpha")
    good(tmp_path, "beta", filename="beta.yml")
    good(tmp_path, "hidden", filename=".hidden.yaml")
    good(tmp_path, "tmp", filename=".tmp-x.partial")
    good(tmp_path, "text", filename="notes.txt")
    good(tmp_path, "backup", filename="alpha.yaml~")
    good(tmp_path / "sub", "nested")
    assert ids(load_catalog(tmp_path)) == {"alpha", "beta"}


# --- index files ---------------------------------------------------------------------------------

def test_index_file_with_a_list_of_entries(tmp_path):
    write(tmp_path / "index.yaml", "images:\n"
          "  - {id: a, name: A, image: /a.sif}\n"
          "  - {id: b, name: B, image: 'docker://b:1'}\n"
          "  - {id: c, name: '', image: /c.sif}\n"
          "  - not a mapping\n")
    catalog = load_catalog(tmp_path)
    assert ids(catalog) == {"a", "b"}
    assert [(p.field, p.message) for p in catalog.problems] == [
        ("images[2].name", "must not be empty"),
        ("images[3]", "must be a mapping of field names to values, got 'not a mapping'"),
    ]


def test_index_file_holds_only_images(tmp_path):
    write(tmp_path / "index.yaml", "images: [{id: a, name: A, image: /a.sif}]\nversion: 2\n")
    write(tmp_path / "notalist.yaml", "images: {id: b}\n")
    catalog = load_catalog(tmp_path)
    assert ids(catalog) == {"a"}
    assert problem_map(catalog) == {
        ("index.yaml", "version"): "an index file holds only 'images:' (a list of entries)",
        ("notalist.yaml", "images"): "must be a list of entries, got a value of type dict",
    }


# --- duplicate ids: the later one is the problem -------------------------------------------------

def test_duplicate_ids_across_files_the_later_file_loses(tmp_path):
    good(tmp_path, "torch", name="First", filename="a.yaml")
    good(tmp_path, "torch", name="Second", filename="b.yaml")
    write(tmp_path / "c.yaml",
          "images:\n  - {id: x, name: X1, image: /x.sif}\n  - {id: x, name: X2, image: /x.sif}\n")
    catalog = load_catalog(tmp_path)
    assert catalog.get("torch").name == "First" and catalog.get("x").name == "X1"
    assert [(Path(p.path).name, p.field, p.message) for p in catalog.problems] == [
        ("b.yaml", "id", f"id 'torch' is already used by {tmp_path / 'a.yaml'}; this entry is left out"),
        ("c.yaml", "id", f"id 'x' is already used by {tmp_path / 'c.yaml'}; this entry is left out"),
    ]


def test_a_bad_entry_does_not_reserve_its_id(tmp_path):
    write(tmp_path / "a.yaml", "id: torch\nname: ''\nimage: /t.sif\n")
    good(tmp_path, "torch", filename="b.yaml")
    catalog = load_catalog(tmp_path)
    assert ids(catalog) == {"torch"} and [p.field for p in catalog.problems] == ["name"]


def test_read_entries_file_directly(tmp_path):
    entries, problems = read_entries_file(good(tmp_path, "alpha"))
    assert [e.id for e in entries] == ["alpha"] and problems == []
    assert entries[0].source == str(tmp_path / "alpha.yaml")


# --- directories ---------------------------------------------------------------------------------

def test_missing_site_directory_is_a_problem(tmp_path):
    catalog = load_catalog(tmp_path / "nope")
    assert catalog.entries == ()
    assert [(p.field, p.message) for p in catalog.problems] == [("directory", "does not exist")]


def test_unlistable_directory_keeps_the_previous_entries(tmp_path):
    good(tmp_path / "cat", "alpha")
    previous = load_catalog(tmp_path / "cat")
    (tmp_path / "cat" / "alpha.yaml").rename(tmp_path / "alpha.yaml")
    (tmp_path / "cat").rmdir()
    catalog = load_catalog(tmp_path / "cat", previous=previous)
    assert ids(catalog) == {"alpha"}
    assert catalog.problems[0].message == "does not exist; keeping the 1 entries loaded before"


# --- the user-defined store ------------------------------------------------------------------------

USER = "id: {id}\nname: {name}\nimage: /opt/carme/images/{id}.sif\nowner: {owner}\nsection: {section}\n"


def user_file(store: Path, section: str, owner: str, id_: str, name: str = "N",
              filename: str | None = None) -> Path:
    directory = store / ("shared" if section == "shared" else "users") / owner
    text = USER.format(id=id_, name=name, owner=owner, section=section)
    return write(directory / (filename or f"{id_}.yaml"), text)


def test_user_store_is_loaded_into_sections(tmp_path):
    good(tmp_path / "site", "torch")
    user_file(tmp_path / "store", "user", "alice", "mine")
    user_file(tmp_path / "store", "user", "bob", "mine")
    user_file(tmp_path / "store", "shared", "bob", "common")
    catalog = load_catalog(tmp_path / "site", tmp_path / "store")
    assert catalog.problems == ()
    assert sorted((e.section, e.owner, e.id) for e in catalog) == [
        ("shared", "bob", "common"), ("site", None, "torch"),
        ("user", "alice", "mine"), ("user", "bob", "mine")]
    assert ids(catalog.visible_to("user", "alice")) == {"torch", "mine", "common"}
    assert catalog.visible_to("user", "alice").get("mine", "alice").owner == "alice"


def test_missing_user_store_is_empty(tmp_path):
    good(tmp_path / "site", "torch")
    catalog = load_catalog(tmp_path / "site", tmp_path / "store")
    assert ids(catalog) == {"torch"} and catalog.problems == ()


def test_user_entries_cannot_take_site_ids(tmp_path):
    good(tmp_path / "site", "torch")
    path = user_file(tmp_path / "store", "shared", "bob", "torch")
    catalog = load_catalog(tmp_path / "site", tmp_path / "store")
    assert [e.section for e in catalog] == ["site"]
    assert catalog.problems[0].path == str(path) and catalog.problems[0].field == "id"
    assert "already used by the site catalog" in catalog.problems[0].message


def test_user_store_files_must_match_their_place(tmp_path):
    store = tmp_path / "store"
    user_file(store, "user", "alice", "renamed", filename="other.yaml")
    write(store / "users" / "alice" / "stolen.yaml",
          USER.format(id="stolen", name="N", owner="bob", section="user"))
    write(store / "shared" / "bob" / "wrong.yaml", USER.format(id="wrong", name="N", owner="bob", section="user"))
    write(store / "shared" / "bob" / "stolen.yaml", USER.format(id="stolen", name="N", owner="eve", section="shared"))
    write(store / "users" / "Not A User" / "x.yaml", USER.format(id="x", name="N", owner="x", section="user"))
    write(store / "shared" / "Not A User" / "x.yaml", USER.format(id="x", name="N", owner="x", section="shared"))
    write(store / "shared" / "bob" / "index.yaml", "images: []\n")
    catalog = load_catalog(tmp_path / "site", store)
    assert ids(catalog) == set()
    problems = problem_map(catalog)
    assert "the store names files <id>.yaml" in problems[("other.yaml", "id")]
    assert {p.message for p in catalog.problems if Path(p.path).name == "stolen.yaml"} == {
        "says 'bob' but the entry is stored in the section of alice",
        "says 'eve' but the entry is stored in the section of bob"}
    assert "stored in the shared section" in problems[("wrong.yaml", "section")]
    assert [p.path for p in catalog.problems if "not a POSIX user name" in p.message] == [
        str(store / "shared" / "Not A User"), str(store / "users" / "Not A User")]
    assert "unknown field" in problems[("index.yaml", "images")]


# --- the watcher -------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_reload_on_edit_add_and_delete(tmp_path):
    good(tmp_path, "alpha", mtime_ns=10**18)
    source = CatalogSource(tmp_path, interval=0)
    first = source.current()
    assert ids(first) == {"alpha"}
    assert source.current() is first  # nothing changed: same object, nothing re-read

    good(tmp_path, "alpha", name="Renamed", mtime_ns=10**18 + 1)  # edit
    assert source.current().get("alpha").name == "Renamed"

    good(tmp_path, "beta", mtime_ns=10**18)  # add
    assert ids(source.current()) == {"alpha", "beta"}

    (tmp_path / "alpha.yaml").unlink()  # delete
    assert ids(source.current()) == {"beta"}


def test_edit_with_same_size_and_restored_mtime_is_seen_through_the_inode(tmp_path):
    good(tmp_path, "alpha", name="Aaaa", mtime_ns=10**18)
    source = CatalogSource(tmp_path, interval=0)
    new = good(tmp_path, "alpha", name="Bbbb", filename=".new", mtime_ns=10**18)
    os.replace(new, tmp_path / "alpha.yaml")  # atomic replace, as editors and rsync do
    assert source.current().get("alpha").name == "Bbbb"


def test_checks_at_most_once_per_interval(tmp_path):
    clock = FakeClock()
    reloads = []
    good(tmp_path, "alpha", mtime_ns=10**18)
    source = CatalogSource(tmp_path, interval=5, clock=clock, on_reload=lambda new, old: reloads.append(new))
    assert len(reloads) == 1 and reloads[0] is source.current()

    good(tmp_path, "alpha", name="Changed", mtime_ns=10**18 + 1)
    clock.now += 4.9
    assert source.current().get("alpha").name == "Alpha"  # not yet due
    clock.now += 0.1
    assert source.current().get("alpha").name == "Changed"
    assert len(reloads) == 2
    clock.now += 60
    source.current()
    assert len(reloads) == 2  # due, but unchanged: not re-read


def test_broken_edit_is_reported_and_logged_and_fix_is_picked_up(tmp_path, caplog):
    good(tmp_path, "alpha", mtime_ns=10**18)
    good(tmp_path, "beta", mtime_ns=10**18)
    source = CatalogSource(tmp_path, interval=0)
    write(tmp_path / "beta.yaml", "id: beta\nname: [\n", mtime_ns=10**18 + 1)
    with caplog.at_level("WARNING", logger="container_catalog.watcher"):
        broken = source.current()
    assert ids(broken) == {"alpha"}
    assert [p.field for p in broken.problems] == ["file"]
    assert "beta.yaml: file: is not valid YAML" in caplog.text
    good(tmp_path, "beta", mtime_ns=10**18 + 2)
    fixed = source.current()
    assert ids(fixed) == {"alpha", "beta"} and fixed.problems == ()


def test_a_failing_callback_does_not_stop_reloads(tmp_path, caplog):
    good(tmp_path, "alpha", mtime_ns=10**18)

    def explode(new, old):
        raise RuntimeError("boom")

    source = CatalogSource(tmp_path, interval=0, on_reload=explode)
    good(tmp_path, "beta", mtime_ns=10**18)
    assert ids(source.current()) == {"alpha", "beta"}
    assert "on_reload callback failed" in caplog.text


def test_directory_gone_keeps_the_entries(tmp_path):
    site = tmp_path / "site"
    good(site, "alpha")
    source = CatalogSource(site, interval=0)
    (site / "alpha.yaml").unlink()
    site.rmdir()
    catalog = source.current()
    assert ids(catalog) == {"alpha"} and "keeping the 1 entries" in catalog.problems[0].message
    good(site, "beta")
    assert ids(source.current()) == {"beta"}


def test_user_store_changes_are_watched_too(tmp_path):
    good(tmp_path / "site", "torch")
    source = CatalogSource(tmp_path / "site", tmp_path / "store", interval=0)
    assert ids(source.current()) == {"torch"}
    user_file(tmp_path / "store", "user", "alice", "mine")
    assert ids(source.current().visible_to("user", "alice")) == {"torch", "mine"}


def test_reload_forces_a_read(tmp_path):
    clock = FakeClock()
    source = CatalogSource(tmp_path, interval=3600, clock=clock)
    good(tmp_path, "alpha")
    assert ids(source.current()) == set()
    assert ids(source.reload()) == {"alpha"} and ids(source.current()) == {"alpha"}
    assert source.loaded_at is not None


async def test_current_in_a_worker_thread(tmp_path):
    good(tmp_path, "alpha")
    source = CatalogSource(tmp_path, interval=0)
    good(tmp_path, "beta")
    assert ids(await asyncio.to_thread(source.current)) == {"alpha", "beta"}


def test_concurrent_callers_always_get_a_whole_catalog(tmp_path):
    for i in range(20):
        good(tmp_path, f"e{i}", mtime_ns=10**18)
    source = CatalogSource(tmp_path, interval=0)
    seen, errors = [], []

    def reader():
        try:
            for _ in range(50):
                seen.append(len(source.current()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    # atomic replaces (an in-place rewrite may be read half-written; the next check heals it)
    for i in range(5):
        new = good(tmp_path, f"e{i}", name=f"Renamed {i}", filename=".new", mtime_ns=10**18 + i + 1)
        os.replace(new, tmp_path / f"e{i}.yaml")
    for t in threads:
        t.join()
    assert errors == [] and set(seen) == {20}


def test_negative_interval_is_refused(tmp_path):
    with pytest.raises(ValueError):
        CatalogSource(tmp_path, interval=-1)
