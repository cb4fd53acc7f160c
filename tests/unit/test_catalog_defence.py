"""Defence in depth in the catalog's schema (security review, findings 6 and 7).

6. The schema itself keeps `env`, `binds` and `roles` out of user-defined entries (on add and for
   files on disk), and the environment deny list covers every variable that makes an
   interpreter, shell or the dynamic loader load code.
7. Whole values are validated with fullmatch: a trailing newline never passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carme_spawner import batch_script, options
from container_catalog import (
    CatalogEntry,
    InvalidEntry,
    UserEntryError,
    add_user_entry,
    fields,
    image_reference,
    load_catalog,
    parse_entry,
)

MINIMAL = {"id": "torch", "name": "Torch", "image": "/opt/carme/images/torch.sif"}
REPO = Path(__file__).resolve().parents[2]


def problems_of(data, **kwargs):
    with pytest.raises(InvalidEntry) as info:
        parse_entry(data, source="/x.yaml", **kwargs)
    return info.value.problems


# --- finding 6: env, binds and roles are the site's alone -----------------------------------------

SITE_ONLY = [
    ("env", {"PYTHONPATH": "/home/dave/evil"}),
    ("env", {"OMP_NUM_THREADS": "4"}),  # harmless for a site entry, still not a user's to set
    ("binds", ["/home/dave/evil:/home/alice/.local:ro"]),
    ("roles", ["admin"]),
]


@pytest.mark.parametrize("section, owner", [("shared", "dave"), ("user", "dave")])
@pytest.mark.parametrize("field, value", SITE_ONLY)
def test_schema_refuses_site_only_fields_in_user_sections(section, owner, field, value):
    [problem] = problems_of({**MINIMAL, field: value}, section=section, owner=owner)
    assert problem.field == field and "set by the site catalog only" in problem.message
    if value != {"PYTHONPATH": "/home/dave/evil"}:
        assert getattr(parse_entry({**MINIMAL, field: value}), field)  # a site entry may set it


def test_add_user_entry_called_directly_refuses_binds_and_env(tmp_path):
    attack = {**MINIMAL, "binds": ["/home/dave/py:/usr/lib/python3/dist-packages"],
              "env": {"PYTHONPATH": "/home/dave/py", "BASH_ENV": "/home/dave/x", "PYTHONSTARTUP": "/home/dave/s",
                      "JUPYTER_CONFIG_DIR": "/home/dave/j"}}
    with pytest.raises(UserEntryError) as info:
        add_user_entry(tmp_path, "dave", attack, shared=True, allowed_schemes=("file",),
                       allowed_prefixes=("/opt/carme/images/",))
    assert {p.field for p in info.value.problems} == {"binds", "env"}
    assert not (tmp_path / "shared").exists() or not any((tmp_path / "shared").rglob("*.yaml"))


def test_files_on_disk_with_site_only_fields_are_left_out(tmp_path):
    store = tmp_path / "store"
    for section, directory in (("shared", store / "shared" / "dave"), ("user", store / "users" / "dave")):
        directory.mkdir(parents=True)
        (directory / "torch.yaml").write_text(
            "id: torch\nname: Torch\nimage: /opt/carme/images/torch.sif\nowner: dave\n"
            f"section: {section}\nbinds: ['/home/dave/py:/usr/lib/python3/dist-packages']\n"
            "env: {LD_PRELOAD: /home/dave/x.so}\nroles: [user]\n")
    catalog = load_catalog(tmp_path / "site", store)
    assert [e for e in catalog if e.user_defined] == []
    fields_ = sorted(p.field for p in catalog.problems if p.field != "directory")
    assert fields_ == ["binds", "binds", "env", "env", "roles", "roles"]


def test_stored_user_entries_no_longer_carry_site_only_fields(tmp_path):
    entry = add_user_entry(tmp_path, "dave", MINIMAL, allowed_schemes=("file",),
                           allowed_prefixes=("/opt/carme/images/",))
    text = Path(entry.source).read_text()
    assert "binds" not in text and "env" not in text and "roles" not in text
    assert parse_entry(entry.to_dict(), section="user", owner="dave") == entry


def test_the_model_refuses_site_only_fields_in_user_sections_too():
    image = "/opt/carme/images/x.sif"
    for extra in ({"binds": (parse_entry({**MINIMAL, "binds": ["/a"]}).binds[0],)},
                  {"env": (("A", "1"),)}, {"roles": ("admin",)}):
        with pytest.raises(ValueError, match="may not set roles, binds, env"):
            CatalogEntry(id="x", name="X", image=image, section="shared", owner="dave", **extra)
    with pytest.raises(ValueError, match="maintainer"):
        CatalogEntry(id="x", name="X", image=image, section="shared", owner="dave", maintainer="ML support")
    assert CatalogEntry(id="x", name="X", image=image, section="user", owner="dave").maintainer == "dave"


CODE_LOADING = [
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "BASH_ENV",
    "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "LD_PRELOAD", "LD_LIBRARY_PATH",
    "LD_AUDIT", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS", "NODE_PATH",
    "JUPYTER_CONFIG_DIR", "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
    "R_PROFILE", "R_PROFILE_USER", "R_ENVIRON", "R_ENVIRON_USER", "JULIA_LOAD_PATH", "JULIA_DEPOT_PATH",
    "LD_BIND_NOW", "LD_ANYTHING", "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "DYLD_X",
]


@pytest.mark.parametrize("name", CODE_LOADING)
def test_variables_that_load_code_are_refused_for_site_entries(name):
    [problem] = problems_of({**MINIMAL, "env": {name: "/x"}})
    assert problem.field == f"env.{name}"
    assert problem.message.startswith("may not be set by a catalog entry: it ")
    assert "code" in problem.message or "shared libraries" in problem.message


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "TORCH_HOME", "TF_CPP_MIN_LOG_LEVEL", "PYTHONUNBUFFERED",
                                  "XLA_PYTHON_CLIENT_PREALLOCATE", "LDX", "ENVIRONMENT", "PS"])
def test_ordinary_variables_are_still_allowed(name):
    assert parse_entry({**MINIMAL, "env": {name: "1"}}).env == ((name, "1"),)


def test_the_deny_list_is_defined_once():
    assert fields.forbidden_env_reason("PYTHONPATH") and fields.forbidden_env_reason("LD_X")
    assert fields.forbidden_env_reason("OMP_NUM_THREADS") is None
    for name in ("PYTHONPATH", "LD_PRELOAD", "DYLD_X", "BASH_ENV"):
        with pytest.raises(ValueError, match=f"container_env\\[0\\]: {name} may not be set"):
            batch_script.validate_job_site(_site(container_env=((name, "/x"),)))


def _site(**changes) -> batch_script.JobSite:
    values = {"job_name": "carme-alice", "comment": "carme", "workdir": "/home/alice",
              "output_path": "/home/alice/j.log", "container_runtime": "apptainer", "binds": ("/home/alice",),
              "export_env": ("PATH",), "launcher": ("python3",), "singleuser_cmd": ("jupyterhub-singleuser",)}
    return batch_script.JobSite(**{**values, **changes})


# --- finding 7: whole values are validated with fullmatch --------------------------------------------

VALIDATING_MODULES = [
    "container_catalog/fields.py", "container_catalog/image_reference.py", "container_catalog/loader.py",
    "container_catalog/schema.py", "container_catalog/catalog.py", "container_catalog/user_entries.py",
    "container_catalog/store_layout.py", "container_catalog/watcher.py", "container_catalog/access.py",
    "carme_spawner/options.py", "carme_spawner/batch_script.py",
]


@pytest.mark.parametrize("module", VALIDATING_MODULES)
def test_no_anchored_match_in_validating_code(module):
    text = (REPO / module).read_text()
    assert not re.search(r"\bre\.(match|search)\(|\.match\(", text), module
    assert not re.search(r"""re\.compile\(r?["']\^""", text), f"{module}: anchor with fullmatch, not ^...$"


@pytest.mark.parametrize("check, value", [
    (fields.entry_id, "torch"), (fields.owner_name, "alice"), (fields.image, "/opt/x.sif"),
    (fields.image, "docker://nvcr.io/x:1"), (lambda v: fields.tags([v]), "cuda"),
    (lambda v: fields.env({v: "1"}), "OMP"), (lambda v: fields.bind(v, "binds[0]"), "/data"),
    (lambda v: fields.roles([v]), "user"), (lambda v: fields.choice(v, "gpu", fields.GPU_MODES), "none"),
])
def test_a_trailing_newline_never_passes_a_catalog_rule(check, value):
    check(value)
    for bad in (value + "\n", value + "\r\n", "\n" + value):
        with pytest.raises(fields.FieldError):
            check(bad)


@pytest.mark.parametrize("module, name, sample", [
    (fields, "ENTRY_ID", "torch"), (fields, "OWNER_NAME", "alice"), (fields, "CHOICE_ID", "dave/torch"),
    (fields, "TAG_KEY", "cuda"), (fields, "ENV_NAME", "OMP"), (fields, "BIND_PATH", "/data"),
    (image_reference, "IMAGE_PATH", "/a.sif"), (image_reference, "IMAGE_URI", "docker://a"),
    (options, "IMAGE_ID", "dave/torch"), (options, "PARTITION_NAME", "batch"), (options, "RESERVATION_NAME", "r1"),
    (batch_script, "JOB_NAME", "carme"), (batch_script, "EXTRA_SBATCH", "--qos=x"),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "?"))
def test_a_trailing_newline_never_passes_a_pattern(module, name, sample):
    rule = getattr(module, name)
    assert rule.fullmatch(sample) and not rule.fullmatch(sample + "\n")
    assert rule.pattern[:1] != "^" and rule.pattern[-1:] != "$"  # fullmatch does the anchoring


def test_a_trailing_newline_never_passes_the_user_image_rule():
    with pytest.raises(image_reference.ImageReferenceError, match="newline"):
        image_reference.check_user_image_reference("/opt/x.sif\n", ["file"], ["/opt/"])


@pytest.mark.parametrize("raw, field", [
    ({"image": "base\n"}, "image"), ({"partition": "interactive\n"}, "partition"),
    ({"reservation": "r1\n"}, "reservation"), ({"gpus": "1\n"}, "gpus"), ({"runtime": "60\n"}, "runtime"),
    ({"runtime": "1:00\n"}, "runtime"),
])
def test_a_trailing_newline_never_passes_a_spawn_option(raw, field):
    from .samples import LIMITS

    with pytest.raises(options.OptionsError) as info:
        options.parse_options(raw, LIMITS)
    assert info.value.field == field


@pytest.mark.parametrize("field, value", [
    ("job_name", "carme-alice\n"), ("comment", "carme\n"), ("workdir", "/home/alice\n"),
    ("output_path", "/home/alice/j.log\n"), ("container_runtime", "/usr/bin/apptainer\n"),
    ("binds", ("/home/alice\n",)), ("export_env", ("PATH\n",)), ("extra_sbatch", ("--qos=normal\n",)),
    ("container_env", (("OMP\n", "1"),)),
])
def test_a_trailing_newline_never_passes_a_job_site_setting(field, value):
    with pytest.raises(ValueError):
        batch_script.validate_job_site(_site(**{field: value}))
