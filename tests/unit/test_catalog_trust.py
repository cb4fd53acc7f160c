"""Trust in user-defined catalog entries (security review, findings 3-5).

3. A shared entry can never take over a site id: users pick it as "<owner>/<id>".
4. Stored entries are re-checked at every load against today's image rules, and against their
   owner's current standing when the catalog is filtered for a user.
5. A user-defined entry cannot pass for a site entry: no site names, the maintainer is the owner,
   and forms and pages show who added it.

New names are looked up inside the tests (not imported at the top), so each test fails on its own
on code without them.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest

import container_catalog
from carme_services import catalog as service
from carme_spawner import form, images
from carme_spawner.form import FormDefaults, defaults_from_last_choice, render_options_form
from container_catalog import (
    CatalogEntry,
    CatalogSource,
    UserEntryConflict,
    UserEntryError,
    add_user_entry,
    disable_user_entry,
    enable_user_entry,
    load_catalog,
)

from .samples import LIMITS

SITE_TORCH = (
    "id: pytorch-gpu\nname: PyTorch 2.5 (GPU)\nimage: /opt/carme/images/pytorch-gpu.sif\ngpu: required\n"
    "tags: {framework: pytorch, cuda: '12.4'}\nmaintainer: ML support <ml-support@example.org>\n"
)
SITE_CPU = "id: python-cpu\nname: Python 3.11 (CPU)\nimage: /opt/carme/images/python-cpu.sif\n"
SCHEMES = ("file", "docker")
PREFIXES = ("/opt/carme/images/", "/home/{username}/images/", "docker://nvcr.io/")


def site(tmp_path: Path, *, broken_torch: bool = False) -> Path:
    directory = tmp_path / "site"
    directory.mkdir(exist_ok=True)
    (directory / "python-cpu.yaml").write_text(SITE_CPU)
    (directory / "pytorch-gpu.yaml").write_text("id: pytorch-gpu\nname: [\n" if broken_torch else SITE_TORCH)
    return directory


def add(store: Path, owner: str, entry_id: str, *, image: str = "/opt/carme/images/pytorch-gpu.sif",
        name: str | None = None, shared: bool = True, **kw) -> CatalogEntry:
    kw.setdefault("allowed_schemes", SCHEMES)
    kw.setdefault("allowed_prefixes", PREFIXES)
    data = {"id": entry_id, "name": name or f"{owner}'s {entry_id}", "image": image, **kw.pop("data", {})}
    return add_user_entry(store, owner, data, shared=shared, **kw)


def choice_ids(catalog) -> set[str]:
    return {e.choice_id for e in catalog}


# --- finding 3: a shared image cannot take over a site id ----------------------------------------

def test_choice_id_is_the_id_for_site_and_own_entries_and_owner_slash_id_for_shared_ones():
    image = "/opt/carme/images/x.sif"
    assert CatalogEntry(id="torch", name="T", image=image).choice_id == "torch"
    assert CatalogEntry(id="torch", name="T", image=image, section="user", owner="dave").choice_id == "torch"
    assert CatalogEntry(id="torch", name="T", image=image, section="shared", owner="dave").choice_id == "dave/torch"


def test_a_shared_entry_does_not_answer_for_a_site_id_whose_file_fails_to_load(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "pytorch-gpu", image="/home/dave/images/evil.sif")  # before the site had that id
    catalog = load_catalog(site(tmp_path, broken_torch=True), store)
    assert [p.field for p in catalog.problems] == ["file"]  # the site's pytorch-gpu.yaml
    for username in ("alice", "dave", None):
        assert catalog.get("pytorch-gpu", username) is None
        view = catalog.visible_to("user", username)
        assert view.get("pytorch-gpu", username) is None
        assert view.get("dave/pytorch-gpu", username).image == "/home/dave/images/evil.sif"
    choices = images.images_from_catalog(catalog, "user", "alice")
    assert {i.choice.id for i in choices} == {"python-cpu", "dave/pytorch-gpu"}


def test_default_image_and_remembered_choice_never_pick_a_shared_entry(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "pytorch-gpu", image="/home/dave/images/evil.sif")
    catalog = load_catalog(site(tmp_path, broken_torch=True), store)
    choices = [i.choice for i in images.images_from_catalog(catalog, "user", "alice")]
    limits = LIMITS.__class__(**{**LIMITS.__dict__, "default_image": "pytorch-gpu"})
    defaults = defaults_from_last_choice({"image": "pytorch-gpu"}, limits, choices)
    assert [c.id for c in choices] == ["dave/pytorch-gpu", "python-cpu"]  # by name
    assert defaults.image == "python-cpu"  # the first site image, never a user-defined one
    assert defaults_from_last_choice({}, limits, choices[:1]).image == ""


def test_a_renamed_site_id_does_not_pass_to_a_shared_entry(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "torch")
    directory = site(tmp_path)
    (directory / "torch.yaml").write_text(SITE_TORCH.replace("pytorch-gpu", "torch").replace("2.5", "2.4"))
    assert load_catalog(directory, store).get("torch", "alice").section == "site"
    (directory / "torch.yaml").unlink()  # the site renamed its `torch`
    assert load_catalog(directory, store).get("torch", "alice") is None


def test_plain_ids_resolve_to_the_site_then_the_users_own_entry_never_to_a_shared_one():
    def e(section, owner, name):
        return CatalogEntry(id="torch", name=name, image="/opt/carme/images/t.sif", section=section, owner=owner)

    catalog = container_catalog.Catalog(entries=(e("shared", "dave", "Dave's"), e("user", "alice", "Alice's")))
    assert catalog.get("torch", "alice").name == "Alice's"
    assert catalog.get("torch", "bob") is None and catalog.get("torch") is None
    assert catalog.get("dave/torch", "bob").name == "Dave's"
    assert catalog.get("alice/torch", "alice") is None  # an own entry is picked by its plain id
    assert catalog.visible_to("user", "bob").get("torch", "bob") is None


def test_two_owners_may_share_the_same_id(tmp_path):
    store = tmp_path / "store"
    add(store, "alice", "torch")
    add(store, "bob", "torch")
    with pytest.raises(UserEntryConflict):
        add(store, "bob", "torch")  # unique per owner
    catalog = load_catalog(site(tmp_path), store)
    assert catalog.problems == ()
    assert {"alice/torch", "bob/torch"} <= choice_ids(catalog.visible_to("user", "carol"))
    assert catalog.get("bob/torch").owner == "bob"


def test_shared_entries_are_changed_by_owner_slash_id(tmp_path):
    store = tmp_path / "store"
    add(store, "alice", "torch")
    add(store, "bob", "torch")
    assert disable_user_entry(store, "bob", "torch", shared=True, caller="bob").enabled is False
    catalog = load_catalog(site(tmp_path), store)
    assert catalog.get("bob/torch").enabled is False and catalog.get("alice/torch").enabled is True
    with pytest.raises(container_catalog.UserEntryForbidden):
        enable_user_entry(store, "bob", "torch", shared=True, caller="alice",
                          allowed_schemes=SCHEMES, allowed_prefixes=PREFIXES)


def test_a_flat_shared_file_of_the_old_layout_is_a_problem_not_an_entry(tmp_path):
    store = tmp_path / "store"
    (store / "shared").mkdir(parents=True)
    (store / "shared" / "pytorch-gpu.yaml").write_text(
        "id: pytorch-gpu\nname: N\nimage: /opt/carme/images/x.sif\nowner: dave\nsection: shared\n")
    catalog = load_catalog(site(tmp_path), store)
    assert [e.section for e in catalog] == ["site", "site"]
    assert [(Path(p.path).name, p.field) for p in catalog.problems] == [("pytorch-gpu.yaml", "file")]
    assert "shared/<owner>/<id>.yaml" in catalog.problems[0].message


def test_choice_id_rule():
    rule = container_catalog.fields.CHOICE_ID
    assert container_catalog.CHOICE_ID is rule
    for good in ("torch", "pytorch-gpu", "dave/torch", "_svc/x.y-z", "a" * 32 + "/" + "b" * 64):
        assert rule.fullmatch(good), good
    for bad in ("", "dave/", "/torch", "Dave/torch", "dave/Torch", "a/b/c", "dave torch", "dave/torch\n",
                "../torch", "dave/../torch", "a" * 33 + "/torch", "-x/torch"):
        assert not rule.fullmatch(bad), bad
    assert container_catalog.fields.choice_id("dave/torch") == ("dave", "torch")
    assert container_catalog.fields.choice_id("torch") == (None, "torch")
    with pytest.raises(container_catalog.fields.FieldError, match="<owner>/<id>"):
        container_catalog.fields.choice_id("a/b/c")


def test_username_in_a_prefix_is_the_entry_owner_on_add(tmp_path):
    store = tmp_path / "store"
    prefixes = ("/home/{username}/images/",)
    assert add(store, "alice", "mine", image="/home/alice/images/x.sif", shared=False,
               allowed_prefixes=prefixes).image == "/home/alice/images/x.sif"
    with pytest.raises(UserEntryError) as info:
        add(store, "alice", "bobs", image="/home/bob/images/x.sif", allowed_prefixes=prefixes)
    assert info.value.field == "image" and "/home/alice/images/" in info.value.message
    with pytest.raises(UserEntryError):
        add(store, "alice", "lit", image="/home/{username}/images/x.sif", allowed_prefixes=prefixes)


def test_username_in_a_prefix_is_the_entry_owner_on_load_and_enable(tmp_path):
    store = tmp_path / "store"
    add(store, "alice", "own", image="/home/alice/images/x.sif")
    add(store, "alice", "bobs", image="/home/bob/images/x.sif", allowed_prefixes=("/home/",))
    rules = container_catalog.UserEntryRules(schemes=("file",), prefixes=("/home/{username}/images/",))
    catalog = load_catalog(site(tmp_path), store, user_rules=rules)
    assert choice_ids(catalog.visible_to("user", "carol")) == {"python-cpu", "pytorch-gpu", "alice/own"}
    assert [(Path(p.path).name, p.field) for p in catalog.problems] == [("bobs.yaml", "image")]
    disable_user_entry(store, "alice", "bobs", shared=True)
    with pytest.raises(UserEntryError) as info:
        enable_user_entry(store, "alice", "bobs", shared=True, allowed_schemes=("file",),
                          allowed_prefixes=("/home/{username}/images/",))
    assert info.value.field == "image"


# --- finding 4: stored entries are re-checked against today's rules --------------------------------

def test_entries_that_todays_schemes_refuse_are_left_out_at_load(tmp_path):
    store = tmp_path / "store"
    path = Path(add(store, "dave", "ngc", image="docker://nvcr.io/nvidia/pytorch:24.05-py3").source)
    add(store, "dave", "local", image="/opt/carme/images/x.sif", shared=False)
    assert "dave/ngc" in choice_ids(load_catalog(site(tmp_path), store))  # no rules given: not re-checked
    rules = container_catalog.UserEntryRules(schemes=("file",), prefixes=PREFIXES)
    catalog = load_catalog(site(tmp_path), store, user_rules=rules)
    assert "dave/ngc" not in choice_ids(catalog) and catalog.get("local", "dave") is not None
    [problem] = catalog.problems
    assert (problem.path, problem.field) == (str(path), "image")
    assert "docker:// is not allowed" in problem.message and "not offered" in problem.message


def test_entries_that_todays_prefixes_refuse_are_left_out_by_the_watcher(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "old", image="/opt/carme/images/x.sif")
    rules = container_catalog.UserEntryRules(schemes=["file"], prefixes=["/srv/images/"])
    source = CatalogSource(site(tmp_path), store, interval=0, user_rules=rules)
    assert "dave/old" not in choice_ids(source.current())
    assert [p.field for p in source.current().problems] == ["image"]


def test_user_entry_rules_are_checked_when_made():
    rules = container_catalog.UserEntryRules(["file"], ["/a/"])
    assert rules == container_catalog.UserEntryRules(("file",), ("/a/",)) and hash(rules)
    with pytest.raises(ValueError, match="schemes"):
        container_catalog.UserEntryRules(("http",), ())
    with pytest.raises(ValueError, match="prefixes"):
        container_catalog.UserEntryRules(("file",), "/a/")


def test_entries_of_owners_no_longer_trusted_are_left_out(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "torch")
    add(store, "dave", "mine", shared=False)
    add(store, "erin", "jax")
    catalog = load_catalog(site(tmp_path), store)
    asked = []

    def may_share(owner: str) -> bool:
        asked.append(owner)
        return owner == "erin"

    view = catalog.visible_to("user", "dave", owner_may_share=may_share)
    assert choice_ids(view) == {"python-cpu", "pytorch-gpu", "erin/jax"}  # dave's own entry too
    assert sorted(asked) == ["dave", "erin"]  # once per owner
    assert choice_ids(catalog.visible_to("user", "dave", owner_may_share=lambda owner: None)) == {
        "python-cpu", "pytorch-gpu"}  # anything but True refuses
    assert choice_ids(catalog.visible_to("user", "dave")) == {
        "python-cpu", "pytorch-gpu", "dave/torch", "mine", "erin/jax"}
    chosen = images.images_from_catalog(catalog, "user", "dave", owner_may_share=may_share)
    assert {i.choice.id for i in chosen} == {"python-cpu", "pytorch-gpu", "erin/jax"}


# --- finding 5: user-defined entries cannot pass for site entries -----------------------------------

@pytest.mark.parametrize("name", ["PyTorch 2.5 (GPU)", "  pytorch 2.5 (gpu) ", "PYTORCH  2.5 (GPU)"])
def test_a_site_entry_name_is_refused_on_add(tmp_path, name):
    catalog = load_catalog(site(tmp_path))
    with pytest.raises(UserEntryConflict) as info:
        add(tmp_path / "store", "dave", "torch", name=name, reserved_names=catalog.names("site"))
    assert info.value.field == "name" and "name of a site catalog entry" in info.value.message
    assert not (tmp_path / "store" / "shared" / "dave" / "torch.yaml").exists()


def test_a_site_entry_name_is_left_out_on_load(tmp_path):
    store = tmp_path / "store"
    path = add(store, "dave", "torch", name="pytorch 2.5 (gpu)").source  # added before the site had it
    catalog = load_catalog(site(tmp_path), store)
    assert "dave/torch" not in choice_ids(catalog)
    assert [(p.path, p.field) for p in catalog.problems] == [(path, "name")]
    assert "name of a site entry" in catalog.problems[0].message


def test_the_maintainer_of_a_user_entry_is_its_owner(tmp_path):
    store = tmp_path / "store"
    assert add(store, "dave", "torch").maintainer == "dave"
    assert add(store, "dave", "jax", data={"maintainer": "dave"}).maintainer == "dave"
    with pytest.raises(UserEntryError) as info:
        add(store, "dave", "fake", data={"maintainer": "ML support <ml-support@example.org>"})
    assert info.value.field == "maintainer" and "always the entry's owner (dave)" in info.value.message
    assert load_catalog(site(tmp_path), store).get("dave/torch").maintainer == "dave"


def test_a_stored_entry_with_another_maintainer_is_left_out(tmp_path):
    path = tmp_path / "store" / "shared" / "dave" / "torch.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("id: torch\nname: T\nimage: /opt/carme/images/t.sif\nmaintainer: ML support\n"
                    "owner: dave\nsection: shared\n")
    catalog = load_catalog(site(tmp_path), tmp_path / "store")
    assert "dave/torch" not in choice_ids(catalog)
    assert [p.field for p in catalog.problems] == ["maintainer"]


def test_the_spawn_form_shows_who_added_an_image(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "torch", name="Torch nightly")
    add(store, "alice", "mine", shared=False)
    catalog = load_catalog(site(tmp_path), store)
    choices = [i.choice for i in images.images_from_catalog(catalog, "user", "alice")]
    text = render_options_form(choices, LIMITS, FormDefaults(image="python-cpu"))
    assert "shared by dave" in text and "added by alice" in text
    assert 'value="dave/torch"' in text and 'value="mine"' in text
    site_card = text[text.index('value="python-cpu"'):text.index("Python 3.11 (CPU)") + 100]
    assert " by " not in site_card
    assert form.ImageChoice("x", "X", section="shared", owner="dave").owner_label == "shared by dave"


def test_the_catalog_page_shows_who_added_an_entry(tmp_path):
    store = tmp_path / "store"
    add(store, "dave", "torch", name="Torch <b>nightly</b>")
    catalog = load_catalog(site(tmp_path), store)
    loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(service.CatalogService.template_dir)),
        jinja2.DictLoader({"page.html": "{% block main %}{% endblock %}"}),
    ])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    text = env.get_template("catalog.html").render(
        entries=[service._PageEntry(e) for e in catalog], problems=(), query="", tag="", all_tags=[],
        may_write=False, added="", error="", form={}, gpu_modes=(), prefixes=[], role="user",
        service_prefix="/services/carme-catalog/", xsrf_token="x")
    assert "shared by dave" in text and 'data-id="dave/torch"' in text
    assert "<b>nightly</b>" not in text
    shared = next(e for e in catalog if e.user_defined)
    assert service.entry_json(shared)["owner"] == "dave"
    assert service.entry_json(shared)["choice_id"] == "dave/torch"


def test_the_service_routes_choice_ids():
    routes = {handler: pattern for pattern, handler, _ in service.CatalogService.web_handlers(None)}
    pattern = routes[service.ImageHandler]
    assert re.fullmatch(pattern, "api/images/dave/torch")[1] == "dave/torch"
    assert re.fullmatch(pattern, "api/images/torch")[1] == "torch"
    for bad in ("api/images/a/b/c", "api/images/Dave/torch", "api/images/dave/", "api/images/../torch"):
        assert re.fullmatch(pattern, bad) is None, bad
