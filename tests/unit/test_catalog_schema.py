"""Tests for container_catalog's entry model, field rules, role filtering and search (pure)."""

import dataclasses
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carme_spawner import options
from container_catalog import (
    ROLES,
    BindMount,
    Catalog,
    CatalogEntry,
    CatalogProblem,
    InvalidEntry,
    parse_entry,
)
from container_catalog import fields, image_reference

MINIMAL = {"id": "pytorch", "name": "PyTorch", "image": "/opt/carme/images/pytorch-gpu.sif"}
SOURCE = "/etc/carme/catalog/pytorch.yaml"


def problems_of(data, **kwargs) -> tuple[CatalogProblem, ...]:
    with pytest.raises(InvalidEntry) as info:
        parse_entry(data, source=SOURCE, **kwargs)
    return info.value.problems


def the_problem(data, **kwargs) -> CatalogProblem:
    problems = problems_of(data, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def entry(**fields_) -> CatalogEntry:
    return parse_entry({**MINIMAL, **fields_}, source=SOURCE)


# --- the model and its defaults ------------------------------------------------------------------

def test_minimal_entry_gets_the_defaults():
    e = entry()
    assert e == CatalogEntry(id="pytorch", name="PyTorch", image="/opt/carme/images/pytorch-gpu.sif")
    assert (e.interface, e.gpu, e.roles, e.enabled, e.section, e.owner) == (
        "jupyterlab", "optional", ("user", "power", "admin"), True, "site", None)
    assert e.source == SOURCE and e.runnable and not e.user_defined


def test_full_entry_is_normalized():
    e = entry(
        description="  GPU\n  training\t\tand  inference \n", interface="notebook", gpu="required",
        tags={"framework": "pytorch", "cuda": "12.4", "year": 2024}, roles=["admin", "power", "admin"],
        binds=["/data", "/scratch:/mnt/scratch", "/ref:/ref:ro"], env={"OMP_NUM_THREADS": 4, "TZ": "UTC"},
        maintainer=" ML team ", enabled=False,
    )
    assert e.description == "GPU training and inference"
    assert e.tags == (("framework", "pytorch"), ("cuda", "12.4"), ("year", "2024"))
    assert e.tag("cuda") == "12.4" and e.tag("nope") is None
    assert e.roles == ("power", "admin")
    assert e.binds == (BindMount("/data", "/data", "rw"), BindMount("/scratch", "/mnt/scratch", "rw"),
                       BindMount("/ref", "/ref", "ro"))
    assert [str(b) for b in e.binds] == ["/data:/data:rw", "/scratch:/mnt/scratch:rw", "/ref:/ref:ro"]
    assert e.env == (("OMP_NUM_THREADS", "4"), ("TZ", "UTC"))
    assert e.maintainer == "ML team" and not e.enabled and not e.runnable


def test_entries_are_frozen_and_hashable():
    e = entry(tags=["a"], binds=["/data"], env={"A": "1"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.name = "other"
    assert len({e, entry(tags=["a"], binds=["/data"], env={"A": "1"})}) == 1


def test_list_tags_are_labels():
    assert entry(tags=["gpu", "teaching"]).tags == (("gpu", ""), ("teaching", ""))


def test_none_means_omitted_for_optional_fields():
    assert entry(description=None, tags=None, roles=None, enabled=None, maintainer=None) == entry()


def test_to_dict_round_trips():
    e = entry(description="d", tags={"framework": "jax", "gpu": ""}, roles=["power"], binds=["/a:/b:ro"],
              env={"X": "1"}, maintainer="m", enabled=False, interface="code-server", gpu="none")
    assert parse_entry(e.to_dict(), source=SOURCE) == e
    user = parse_entry({**MINIMAL, "owner": "alice"}, section="user", owner="alice")
    assert user.to_dict()["owner"] == "alice" and user.to_dict()["section"] == "user"
    assert parse_entry(user.to_dict(), section="user", owner="alice") == user


def test_non_interactive_interfaces_validate_but_do_not_run():
    for interface in ("notebook", "code-server"):
        assert not entry(interface=interface).runnable
    assert the_problem({**MINIMAL, "interface": "rstudio"}).field == "interface"


# --- every rule: the problem names the file, the field and the rule --------------------------------

BAD_FIELDS = [
    ("id", "PyTorch", "must be a slug"),
    ("id", "-torch", "must be a slug"),
    ("id", "a" * 65, "1-64 characters"),
    ("id", "py torch", "[a-z0-9][a-z0-9_.-]{0,63}"),
    ("id", 12, "got 12"),
    ("name", "", "must not be empty"),
    ("name", "   ", "must not be empty"),
    ("name", "x" * 81, "at most 80 characters"),
    ("name", "Py\nTorch", "printable on one line"),
    ("name", "Py\x00Torch", "non-printable character 0x0000"),
    ("name", ["PyTorch"], "must be text"),
    ("description", "d" * 1001, "at most 1000 characters"),
    ("description", "bell\x07", "non-printable"),
    ("description", {"text": "x"}, "must be text"),
    ("image", "pytorch.sif", "absolute path ending in .sif"),
    ("image", "/opt/images/pytorch.img", "absolute path ending in .sif"),
    ("image", "/opt/../etc/x.sif", "no '..'"),
    ("image", "http://example.org/x.sif", "docker://, oras:// or library://"),
    ("image", "docker://ubuntu;reboot", "docker://, oras:// or library://"),
    ("image", "/a/" + "b" * 600 + ".sif", "at most 512 characters"),
    ("interface", "terminal", "must be one of jupyterlab, notebook, code-server"),
    ("gpu", True, "must be one of required, optional, none"),
    ("gpu", "yes", "must be one of required, optional, none"),
    ("tags", "pytorch", "mapping of names to values or a list of labels"),
    ("tags", {f"t{i}": "x" for i in range(33)}, "at most 32 tags"),
    ("tags", {"bad key": "x"}, "tag name 'bad key' must be"),
    ("tags", ["ok", "not ok"], "tag name 'not ok' must be"),
    ("tags.cuda", {"cuda": 12.4}, "quoted text (YAML reads 12.10 as 12.1)"),
    ("tags.cuda", {"cuda": "v" * 81}, "at most 80 characters"),
    ("tags.cuda", {"cuda": "12\n4"}, "printable on one line"),
    ("tags.cuda", {"cuda": ["12"]}, "must be text or a whole number"),
    ("roles", "power", "non-empty list of roles"),
    ("roles", [], "non-empty list of roles"),
    ("roles[1]", ["user", "root"], "must be one of user, power, admin"),
    ("binds", "/data", "must be a list of bind specs"),
    ("binds", ["/d"] * 17, "at most 16 binds"),
    ("binds[0]", ["data"], "source must be an absolute path"),
    ("binds[0]", ["/data:mnt"], "target must be an absolute path"),
    ("binds[0]", ["/data:/mnt:rx"], "mode must be ro or rw"),
    ("binds[0]", ["/a:/b:ro:x"], "at most two ':'"),
    ("binds[0]", ["/a,/b"], "must not contain a comma"),
    ("binds[0]", ["/a /b"], "whitespace"),
    ("binds[0]", ["/data/../etc"], "must not contain '..'"),
    ("binds[0]", ["/tools:/usr/lib/tools"], "must not be /usr or below it"),  # issue 20: not onto the system
    ("binds[0]", ["/data:/../x"], "target must not contain '..'"),
    ("binds[0]", ["/da$ta"], "source must be an absolute path"),
    ("binds[0]", [7], "bind spec"),
    ("env", ["A=1"], "mapping of variable names to values"),
    ("env", {"lower": "x"}, "must match [A-Z_][A-Z0-9_]*"),
    ("env", {"1ABC": "x"}, "must match [A-Z_][A-Z0-9_]*"),
    ("env", {f"V{i}": "x" for i in range(65)}, "at most 64 variables"),
    ("env.FOO", {"FOO": "a\nb"}, "printable on one line"),
    ("env.FOO", {"FOO": "x" * 1001}, "at most 1000 characters"),
    ("env.FOO", {"FOO": 1.5}, "quoted text"),
    ("env.FOO", {"FOO": "a,b"}, "apptainer splits --env values at commas"),
    ("env.FOO", {"FOO": None}, "must be text or a whole number"),
    ("env.JUPYTERHUB_API_TOKEN", {"JUPYTERHUB_API_TOKEN": "x"}, "set by the hub"),
    ("env.JPY_API_TOKEN", {"JPY_API_TOKEN": "x"}, "set by the hub"),
    ("env.SLURM_JOB_ID", {"SLURM_JOB_ID": "1"}, "set by SLURM"),
    ("env.APPTAINER_BIND", {"APPTAINER_BIND": "/"}, "container runtime"),
    ("env.SINGULARITYENV_X", {"SINGULARITYENV_X": "1"}, "container runtime"),
    ("env.APPTAINERENV_LD_PRELOAD", {"APPTAINERENV_LD_PRELOAD": "/x.so"}, "injected variables"),
    ("env.SINGULARITY_BIND", {"SINGULARITY_BIND": "/"}, "container runtime"),
    ("env.LD_PRELOAD", {"LD_PRELOAD": "/x.so"}, "shared libraries"),
    ("env.LD_LIBRARY_PATH", {"LD_LIBRARY_PATH": "/x"}, "shared libraries"),
    ("env.PATH", {"PATH": "/bin"}, "which programs run"),
    ("env.CUDA_VISIBLE_DEVICES", {"CUDA_VISIBLE_DEVICES": "0"}, "GPUs SLURM allocated"),
    ("maintainer", "m" * 201, "at most 200 characters"),
    ("maintainer", "a\tb", "printable on one line"),
    ("enabled", "yes", "must be true or false"),
    ("enabled", 1, "must be true or false"),
]


@pytest.mark.parametrize("field, value, rule", BAD_FIELDS,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_FIELDS)])
def test_each_rule_names_file_field_and_rule(field, value, rule):
    top = field.split(".")[0].split("[")[0]
    problem = the_problem({**MINIMAL, top: value})
    assert (problem.path, problem.field) == (SOURCE, field)
    assert rule in problem.message
    assert str(problem).startswith(f"{SOURCE}: {field}: ")
    assert "\n" not in str(problem)


@pytest.mark.parametrize("field", ["id", "name", "image"])
def test_required_fields(field):
    data = dict(MINIMAL)
    del data[field]
    problem = the_problem(data)
    assert (problem.field, problem.message) == (field, "is required")


def test_unknown_key_is_named():
    problem = the_problem({**MINIMAL, "imagee": "x"})
    assert problem.field == "imagee" and problem.message.startswith("unknown field; allowed: id, name")
    assert the_problem({**MINIMAL, 3: "x"}).field == "3"
    assert the_problem({**MINIMAL, "a\nb": "x"}).field == "'a\\nb'"


@pytest.mark.parametrize("key", ["owner", "section"])
def test_site_entries_cannot_claim_an_owner(key):
    problem = the_problem({**MINIMAL, key: "alice"})
    assert problem.field == key and "only for user-defined entries" in problem.message


def test_all_problems_of_an_entry_are_reported_at_once():
    bad = {"id": "Bad", "name": "", "image": "x", "gpu": "maybe", "extra": 1}
    problems = problems_of(bad, prefix="images[3].")
    assert {p.field for p in problems} == {"images[3].id", "images[3].name", "images[3].image",
                                           "images[3].gpu", "images[3].extra"}
    with pytest.raises(InvalidEntry) as info:
        parse_entry({"id": "Bad"}, source=SOURCE)
    assert info.value.field == "id" and SOURCE in str(info.value)


@pytest.mark.parametrize("data", [None, [], "id: x", 5])
def test_an_entry_must_be_a_mapping(data):
    problem = the_problem(data)
    assert problem.field == "entry" and "must be a mapping" in problem.message
    assert the_problem(data, prefix="images[0].").field == "images[0]"


def test_image_references_accepted():
    for ref in ("/opt/carme/images/x.sif", "docker://nvcr.io/nvidia/pytorch:24.05-py3",
                "oras://ghcr.io/org/img:1", "library://sylabs/default/alpine:3.19",
                "docker://python@sha256:abc"):
        assert entry(image=ref).image == ref


# --- user-defined entries: owner and section -------------------------------------------------------

def test_user_entry_owner_and_section():
    e = parse_entry({**MINIMAL}, section="user", owner="alice")
    assert (e.section, e.owner, e.user_defined) == ("user", "alice", True)
    shared = parse_entry({**MINIMAL, "owner": "bob", "section": "shared"}, section="shared")
    assert (shared.section, shared.owner) == ("shared", "bob")


def test_user_entry_owner_must_match_its_place():
    assert the_problem({**MINIMAL, "owner": "bob"}, section="user", owner="alice").field == "owner"
    problem = the_problem({**MINIMAL, "owner": "bob", "section": "user"}, section="shared")
    assert problem.field == "section" and "stored in the shared section" in problem.message
    assert the_problem({**MINIMAL}, section="shared").message == "is required for a user-defined entry"
    assert "POSIX user name" in the_problem({**MINIMAL, "owner": "Bob Smith"}, section="shared").message


def test_unknown_section_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_entry(MINIMAL, section="global")


# --- the rules stay those of the spawner ------------------------------------------------------------

def test_rules_match_the_spawner():
    assert options.IMAGE_ID is fields.CHOICE_ID  # one rule, owned by the catalog
    assert options.validate_image_reference("/opt/x.sif") == image_reference.check_image_reference("/opt/x.sif")
    for ref in ("/a/b.sif", "docker://x/y:1", "/a/../b.sif", "x.sif", "docker://a b",
                "/" + "a" * 600 + ".sif"):
        try:
            options.validate_image_reference(ref)
            spawner_ok = True
        except ValueError:
            spawner_ok = False
        try:
            image_reference.check_image_reference(ref)
            catalog_ok = True
        except ValueError:
            catalog_ok = False
        assert spawner_ok == catalog_ok, ref


# --- role filtering and search ----------------------------------------------------------------------

def make_catalog() -> Catalog:
    def e(id_, name, **kw):
        return CatalogEntry(id=id_, name=name, image=f"/opt/carme/images/{id_}.sif", **kw)
    return Catalog(entries=(
        e("torch", "PyTorch", tags=(("framework", "pytorch"), ("cuda", "12.4"))),
        e("cpu", "Python CPU", tags=(("teaching", ""),), description="plain python"),
        e("rapids", "RAPIDS", roles=("power", "admin"), tags=(("framework", "rapids"),)),
        e("adminonly", "Admin tools", roles=("admin",)),
        e("old", "Old image", enabled=False),
        e("vscode", "VS Code", interface="code-server"),
        e("mine", "Alice's", section="user", owner="alice"),
        e("bobs", "Bob's", section="user", owner="bob"),
        e("common", "Shared one", section="shared", owner="bob"),
        e("mine", "Shared mine", section="shared", owner="carol"),
        e("offshared", "Disabled shared", section="shared", owner="bob", enabled=False),
    ), problems=(CatalogProblem("/x.yaml", "file", "bad"),))


def ids(catalog) -> set[str]:
    return {e.id for e in catalog}


def test_entries_are_sorted_by_name():
    names = [e.name for e in make_catalog()]
    assert names == sorted(names, key=str.casefold)


def test_allowed_for():
    rapids = make_catalog().get("rapids")
    assert [rapids.allowed_for(r) for r in ROLES] == [False, True, True]
    with pytest.raises(ValueError, match="role 'root' is not one of user, power, admin"):
        rapids.allowed_for("root")


def test_visible_to_by_role():
    catalog = make_catalog()
    assert ids(catalog.visible_to("user")) == {"torch", "cpu", "vscode", "common", "mine"}
    assert ids(catalog.visible_to("power")) == {"torch", "cpu", "vscode", "common", "mine", "rapids"}
    assert ids(catalog.visible_to("admin")) == {
        "torch", "cpu", "vscode", "common", "mine", "rapids", "adminonly"}
    assert ids(catalog.visible_to("user", runnable_only=True)) == {"torch", "cpu", "common", "mine"}
    assert catalog.visible_to("admin").problems == ()


def choice_ids(catalog) -> set[str]:
    return {e.choice_id for e in catalog}


def test_visible_to_adds_the_users_own_entries_next_to_shared_ones():
    catalog = make_catalog()
    alice = catalog.visible_to("user", "alice")
    assert choice_ids(alice) == {"torch", "cpu", "vscode", "bob/common", "carol/mine", "mine"}
    assert alice.get("mine", "alice").owner == "alice" and alice.get("mine", "alice").section == "user"
    assert alice.get("carol/mine", "alice").section == "shared"
    assert catalog.visible_to("user", "bob").get("mine", "bob") is None  # carol's is "carol/mine"
    assert catalog.visible_to("user", "bob").get("carol/mine", "bob").owner == "carol"
    assert "bobs" in ids(catalog.visible_to("user", "bob")) and "bobs" not in ids(alice)
    # admins may use every role's entries, but not other users' own sections
    assert "bobs" not in ids(catalog.visible_to("admin", "alice"))
    assert len(alice) == len(alice.entries)


def test_visible_to_refuses_unknown_roles():
    with pytest.raises(ValueError):
        make_catalog().visible_to("superuser")


def test_get():
    catalog = make_catalog()
    assert catalog.get("torch").name == "PyTorch"
    assert catalog.get("old").enabled is False  # get does not filter; visible_to(...).get does
    assert catalog.visible_to("user").get("old") is None
    assert catalog.visible_to("user").get("rapids") is None
    assert catalog.get("mine", "alice").owner == "alice"
    assert catalog.get("mine", "bob") is None and catalog.get("mine") is None  # never a shared entry
    assert catalog.get("carol/mine", "bob").owner == "carol" and catalog.get("carol/mine").owner == "carol"
    assert catalog.get("bobs", "alice") is None and catalog.get("bobs", "bob").owner == "bob"
    assert catalog.get("bob/bobs") is None and catalog.get("alice/mine") is None  # own entries: plain ids
    assert catalog.visible_to("user", "bob").get("carol/mine", "bob").owner == "carol"
    assert catalog.get("nope") is None


def test_ids():
    catalog = make_catalog()
    assert catalog.ids("site") == {"torch", "cpu", "rapids", "adminonly", "old", "vscode"}
    assert catalog.ids("shared") == {"common", "mine", "offshared"}
    assert catalog.visible_to("user").get("torch").image == "/opt/carme/images/torch.sif"


@pytest.mark.parametrize("text, tag, expected", [
    ("", None, None),
    ("torch", None, {"torch"}),
    ("PYTHON", None, {"cpu"}),
    ("plain python", None, {"cpu"}),
    ("python plain", None, {"cpu"}),
    ("bob", None, {"bobs", "common", "offshared"}),
    ("", "framework:pytorch", {"torch"}),
    ("", "framework = pytorch", {"torch"}),
    ("", "framework", {"torch", "rapids"}),
    ("", "pytorch", {"torch"}),
    ("", "teaching", {"cpu"}),
    ("", "cuda:12.4", {"torch"}),
    ("rapids", "framework:pytorch", set()),
    ("nothing-matches", None, set()),
])
def test_search(text, tag, expected):
    catalog = make_catalog()
    found = catalog.search(text, tag=tag)
    assert ids(found) == (ids(catalog) if expected is None else expected)


# --- property: arbitrary text never yields an entry with control characters -----------------------

TEXT_FIELDS = ["id", "name", "description", "image", "interface", "gpu", "maintainer"]

def string_values(e: CatalogEntry):
    for value in dataclasses.astuple(e):
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                yield item
            elif isinstance(item, tuple):
                stack.extend(item)


def no_control_characters(e: CatalogEntry) -> bool:
    bad = ("Cc", "Cf", "Zl", "Zp", "Cs")
    return all(unicodedata.category(c) not in bad for s in string_values(e) for c in s)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(TEXT_FIELDS + ["tags", "tag_key", "env", "env_name", "binds", "roles"]),
       text=st.text(max_size=120))
def test_arbitrary_text_is_rejected_or_clean(field, text):
    if field == "tags":
        data = {**MINIMAL, "tags": {"k": text}}
    elif field == "tag_key":
        data = {**MINIMAL, "tags": [text]}
    elif field == "env":
        data = {**MINIMAL, "env": {"VAR": text}}
    elif field == "env_name":
        data = {**MINIMAL, "env": {text: "v"}}
    elif field in ("binds", "roles"):
        data = {**MINIMAL, field: [text]}
    else:
        data = {**MINIMAL, field: text}
    try:
        e = parse_entry(data, source=SOURCE)
    except InvalidEntry as error:
        assert error.problems and all(p.path == SOURCE for p in error.problems)
        expected_field = {"tag_key": "tags", "env_name": "env"}.get(field, field)
        assert error.problems[0].field.split(".")[0].split("[")[0] == expected_field
        assert all(s.isprintable() for p in error.problems for s in (p.field, p.message))
        return
    assert no_control_characters(e)
    assert all(s.isprintable() for s in string_values(e))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=20), st.integers(), st.booleans(),
                                                        st.none(), st.lists(st.text(max_size=8), max_size=3)),
                       max_size=8))
def test_arbitrary_mappings_never_crash(data):
    try:
        e = parse_entry({**MINIMAL, **data}, source=SOURCE)
    except InvalidEntry as error:
        assert all(p.path == SOURCE and p.field and p.message for p in error.problems)
        return
    assert no_control_characters(e)


# --- GPU types and memory ------------------------------------------------------------------------

def test_an_entry_may_name_its_gpu_types_and_a_minimum_gpu_memory():
    e = entry(gpu="required", gpu_types=["a100", "1g.10gb", "a100"], min_gpu_memory_gb=10)
    assert (e.gpu_types, e.min_gpu_memory_gb) == (("a100", "1g.10gb"), 10)
    assert parse_entry(e.to_dict(), source=SOURCE) == e  # round trip
    assert "gpu_types" not in entry().to_dict()  # left out when not set


@pytest.mark.parametrize(("field", "value", "message"), [
    ("gpu_types", [], "must be a non-empty list of GPU types"),
    ("gpu_types", "a100", "must be a non-empty list of GPU types"),
    ("gpu_types", ["a100", "a 100"], "must be a GPU type"),
    ("min_gpu_memory_gb", 0, "must be a whole number of GB from 1 to 4096"),
    ("min_gpu_memory_gb", "40", "must be a whole number of GB from 1 to 4096"),
])
def test_bad_gpu_types_or_memory_name_the_field(field, value, message):
    problem = the_problem({**MINIMAL, field: value})
    assert problem.field.startswith(field) and message in problem.message, problem


def test_the_types_an_image_may_run_on_follow_its_minimum_memory():
    from carme_slurm.gpu_inventory import gpu_inventory
    from carme_spawner.form import ImageChoice
    from carme_spawner.settings import CarmeSpawnerSettings

    from .test_gpu_inventory import N1, N2

    inventory = gpu_inventory([N1, N2])
    settings = CarmeSpawnerSettings(gpu_type_memory_gb={"a100": 80})
    assert settings.image_gpu_types(ImageChoice("t", "T"), inventory) == ()  # any
    assert settings.image_gpu_types(ImageChoice("t", "T", min_gpu_memory_gb=40), inventory) == ("a100",)
    assert settings.image_gpu_types(ImageChoice("t", "T", min_gpu_memory_gb=8), inventory) == ("1g.10gb", "a100")
    assert settings.image_gpu_types(ImageChoice("t", "T", gpu_types=("1g.10gb",), min_gpu_memory_gb=40),
                                    inventory) == ("(none with 40 GB or more)",)
