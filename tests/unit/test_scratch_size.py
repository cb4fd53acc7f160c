"""The scratch size a server asks for (issue 20): the option, its two refusals before sbatch (the
user's scratch_gib limit, the partition's largest node), --tmp on the job, the form's field and
maximum, and the setting's way from carme.scratch to the spawner."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import pytest

from carme_quota.limits import Limits
from carme_slurm.nodes import SlurmNode
from carme_slurm.scratch import scratch_capacity_mb
from carme_spawner.batch_script import JobSite, render_batch_script, validate_job_site
from carme_spawner.form import FormDefaults, ImageChoice, defaults_from_last_choice, render_options_form, scratch_field
from carme_spawner.options import OptionsError, options_from_form_data, parse_options, scratch_most_gib, validate_limits

from .samples import LIMITS

GIB = 1024  # MiB
#: a site with a scratch; this user may ask 100 GiB; the interactive nodes' largest TmpDisk is 50 GiB
#: and batch's 400 GiB; the default is 20 GiB
SCRATCH = dataclasses.replace(LIMITS, scratch=True, max_scratch_gib=100.0, default_scratch_gib=20,
                              scratch_capacity_mb={"interactive": 50 * GIB, "batch": 400 * GIB})
SITE = JobSite(job_name="carme-alice", comment="carme:alice/", workdir="/home/alice",
               output_path="/home/alice/.carme/job-%j.log", container_runtime="apptainer", binds=("/home/alice",),
               export_env=("PATH",), launcher=("/opt/carme/launch", "--"), singleuser_cmd=("jupyterhub-singleuser",))
IMAGES = [ImageChoice("base", "Plain Python", gpu="none")]


def error_for(raw, limits=SCRATCH) -> OptionsError:
    with pytest.raises(OptionsError) as info:
        parse_options(raw, limits)
    return info.value


def node(name, partitions, tmp_disk_mb) -> SlurmNode:
    return SlurmNode(name=name, address="127.0.0.1", state="idle", flags=(), partitions=tuple(partitions), cpus=8,
                     alloc_cpus=0, memory_mb=8192, alloc_memory_mb=0, gpus=(), reason="", tmp_disk_mb=tmp_disk_mb)


# ---- the option ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, gib", [(30, 30), ("30", 30), (" 7 ", 7), ("007", 7), (0, 0), ("0", 0), (100, 100)])
def test_a_size_is_a_whole_number_of_gib(value, gib):
    assert parse_options({"scratch_gib": value, "partition": "batch"}, SCRATCH).scratch_gib == gib


@pytest.mark.parametrize("value", [-1, "-1", 1.5, "1.5", 20.0, "1e3", "20G", True, [20], {"gib": 1}, "x" * 50])
def test_anything_else_is_refused_naming_the_field(value):
    e = error_for({"scratch_gib": value, "partition": "batch"})
    assert e.field == "scratch_gib"
    assert str(e).startswith("scratch_gib: must be a whole number of GiB, 0 or more (got ")


def test_without_a_size_the_sites_default_is_asked_lowered_to_what_fits():
    assert parse_options({"partition": "batch"}, SCRATCH).scratch_gib == 20
    assert parse_options({"scratch_gib": ""}, SCRATCH).scratch_gib == 20  # an empty form field
    small = dataclasses.replace(SCRATCH, max_scratch_gib=5.5)
    assert parse_options({}, small).scratch_gib == 5  # the user's limit
    tiny = dataclasses.replace(SCRATCH, scratch_capacity_mb={"interactive": 8 * GIB + 100, "batch": 400 * GIB})
    assert parse_options({}, tiny).scratch_gib == 8  # the largest node of the partition
    assert parse_options({"partition": "batch"}, tiny).scratch_gib == 20
    assert parse_options({}, dataclasses.replace(SCRATCH, default_scratch_gib=0)).scratch_gib == 0  # none asked
    unknown = dataclasses.replace(SCRATCH, max_scratch_gib=None, scratch_capacity_mb={}, default_scratch_gib=900)
    assert parse_options({}, unknown).scratch_gib == 900  # nothing known bounds it: SLURM decides


def test_a_site_without_scratch_refuses_a_size_and_asks_none():
    off = dataclasses.replace(SCRATCH, scratch=False)
    assert parse_options({}, off).scratch_gib == 0
    assert parse_options({"scratch_gib": 0}, off).scratch_gib == 0
    assert str(error_for({"scratch_gib": 10}, off)) == (
        "scratch_gib: servers get no scratch on this site (asked for 10 GiB)")


def test_a_size_above_the_users_limit_is_refused_in_plain_words():
    e = error_for({"scratch_gib": 101, "partition": "batch"})
    assert (e.field, str(e)) == ("scratch_gib", "scratch_gib: 101 GiB is above your limit of 100 GiB of job scratch "
                                                "per server")
    half = dataclasses.replace(SCRATCH, max_scratch_gib=2.5)
    assert str(error_for({"scratch_gib": 3}, half)).endswith(
        "3 GiB is above your limit of 2.5 GiB of job scratch per server")
    assert parse_options({"scratch_gib": 2}, half).scratch_gib == 2
    none = dataclasses.replace(SCRATCH, max_scratch_gib=0.0)
    assert "above your limit of 0 GiB" in str(error_for({"scratch_gib": 1}, none))
    assert "a very large number GiB is above your limit" in str(error_for({"scratch_gib": 10**13}))
    free = dataclasses.replace(SCRATCH, max_scratch_gib=None)  # no limit: only the nodes bound it
    assert parse_options({"scratch_gib": 300, "partition": "batch"}, free).scratch_gib == 300


def test_a_size_above_the_largest_node_of_the_partition_is_refused_in_plain_words():
    e = error_for({"scratch_gib": 51})  # routed to interactive, whose largest node gives 50 GiB
    assert (e.field, str(e)) == ("scratch_gib", "scratch_gib: at most 50 GiB fit on the local SSD of the largest node "
                                                "of partition interactive (its TmpDisk: 51200 MB), and a server runs "
                                                "on one node (asked for 51 GiB)")
    assert parse_options({"scratch_gib": 50}, SCRATCH).scratch_gib == 50
    assert parse_options({"scratch_gib": 51, "partition": "batch"}, SCRATCH).scratch_gib == 51
    bare = dataclasses.replace(SCRATCH, scratch_capacity_mb={"interactive": 0, "batch": 400 * GIB})
    assert "no scratch size fits on the local SSD of the largest node of partition interactive (its TmpDisk: 0 MB)" \
        in str(error_for({"scratch_gib": 1}, bare))


def test_without_a_nodes_snapshot_or_for_a_partition_the_view_does_not_know_slurm_decides():
    before = dataclasses.replace(SCRATCH, scratch_capacity_mb={})
    assert parse_options({"scratch_gib": 99}, before).scratch_gib == 99
    only_batch = dataclasses.replace(SCRATCH, scratch_capacity_mb={"batch": 10 * GIB})
    assert parse_options({"scratch_gib": 99}, only_batch).scratch_gib == 99
    assert error_for({"scratch_gib": 99, "partition": "batch"}, only_batch).field == "scratch_gib"


def test_the_most_a_server_may_ask_follows_the_limit_and_the_largest_node():
    assert scratch_most_gib(SCRATCH, "interactive") == 50
    assert scratch_most_gib(SCRATCH, "batch") == 100
    assert scratch_most_gib(SCRATCH) == 100  # any partition: the form before a queue is chosen
    assert scratch_most_gib(dataclasses.replace(SCRATCH, max_scratch_gib=None)) == 400
    partly_known = dataclasses.replace(SCRATCH, max_scratch_gib=None, scratch_capacity_mb={"batch": GIB})
    assert scratch_most_gib(partly_known) is None
    assert scratch_most_gib(dataclasses.replace(SCRATCH, max_scratch_gib=7.9, scratch_capacity_mb={})) == 7


def test_the_form_field_reaches_parse_options():
    assert options_from_form_data({"scratch_gib": ["30"], "partition": ["batch"]}) == {"scratch_gib": "30",
                                                                                       "partition": "batch"}
    assert parse_options(options_from_form_data({"scratch_gib": [""]}), SCRATCH).scratch_gib == 20


@pytest.mark.parametrize("change, field", [
    ({"default_scratch_gib": -1}, "default_scratch_gib"), ({"default_scratch_gib": 1.5}, "default_scratch_gib"),
    ({"max_scratch_gib": -1.0}, "max_scratch_gib"), ({"max_scratch_gib": float("nan")}, "max_scratch_gib"),
    ({"max_scratch_gib": True}, "max_scratch_gib"), ({"scratch_capacity_mb": {"batch": -5}}, "scratch_capacity_mb"),
])
def test_bad_scratch_limits_are_refused_naming_the_field(change, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        validate_limits(dataclasses.replace(SCRATCH, **change))


# ---- the job ---------------------------------------------------------------------------------------

def test_the_size_is_the_jobs_tmp_in_mib_so_slurm_places_it_on_a_node_with_that_much_tmpdisk():
    script = render_batch_script(parse_options({"scratch_gib": 30, "partition": "batch"}, SCRATCH), SITE)
    lines = script.splitlines()
    assert "#SBATCH --tmp=30720M" in lines
    assert lines.index("#SBATCH --tmp=30720M") == lines.index("#SBATCH --mem=4000M") + 1
    assert "#SBATCH --tmp=20480M" in render_batch_script(parse_options({}, SCRATCH), SITE).splitlines()  # the default
    assert "--tmp" not in render_batch_script(parse_options({"scratch_gib": 0}, SCRATCH), SITE)
    assert "--tmp" not in render_batch_script(parse_options({}, LIMITS), SITE)


def test_a_site_cannot_set_tmp_itself():
    with pytest.raises(ValueError, match=r"extra_sbatch\[0\]: --tmp is set by Carme itself"):
        validate_job_site(dataclasses.replace(SITE, extra_sbatch=("--tmp=100",)))


# ---- the form --------------------------------------------------------------------------------------

def scratch_input(text: str) -> dict | None:
    from .test_form import parsed

    return next((i for i in parsed(text).inputs if i.get("name") == "scratch_gib"), None)


def test_the_form_has_a_size_field_only_with_a_scratch():
    assert scratch_input(render_options_form(IMAGES, LIMITS, FormDefaults(image="base"))) is None
    text = render_options_form(IMAGES, SCRATCH, defaults_from_last_choice({}, SCRATCH, IMAGES))
    field = scratch_input(text)
    assert field is not None and field["type"] == "number" and field["min"] == "0" and field["step"] == "1"
    assert field["value"] == "20"


def test_the_forms_maximum_follows_the_limit_and_the_largest_node_of_the_queue():
    field = scratch_input(render_options_form(IMAGES, SCRATCH, FormDefaults(image="base")))
    assert field["max"] == "50"  # routed to interactive: its largest node
    text = render_options_form(IMAGES, SCRATCH, FormDefaults(image="base", partition="batch"))
    assert scratch_input(text)["max"] == "100"  # batch: the user's limit
    assert ("On the node&#39;s local SSD, up to 100 GiB on batch (your limit: 100 GiB; the largest node of batch: "
            "400 GiB). Empty: 20 GiB.") in text
    assert scratch_field(SCRATCH)["interactive"] == (
        50, "On the node's local SSD, up to 50 GiB on interactive (your limit: 100 GiB; the largest node of "
            "interactive: 50 GiB). Empty: 20 GiB.")
    unknown = dataclasses.replace(SCRATCH, max_scratch_gib=None, scratch_capacity_mb={}, default_scratch_gib=0)
    field = scratch_input(render_options_form(IMAGES, unknown, FormDefaults(image="base")))
    assert "max" not in field and field["placeholder"] == "any node"
    assert scratch_field(unknown)["batch"] == (None, "On the node's local SSD, any size SLURM can place on batch. "
                                                     "Empty: none, any node.")


def test_the_forms_script_gets_the_maximum_of_every_queue():
    import json

    field = scratch_input(render_options_form(IMAGES, SCRATCH, FormDefaults(image="base")))
    queues = json.loads(field["data-queues"])
    assert {q: most for q, (most, _hint) in queues.items()} == {"interactive": 50, "batch": 100}


def test_the_last_size_is_the_default_while_it_still_fits():
    assert defaults_from_last_choice({"scratch_gib": "40"}, SCRATCH, IMAGES).scratch_gib == "40"
    assert defaults_from_last_choice({"scratch_gib": 0}, SCRATCH, IMAGES).scratch_gib == "0"
    assert defaults_from_last_choice({"scratch_gib": "101"}, SCRATCH, IMAGES).scratch_gib == "20"  # over the limit
    assert defaults_from_last_choice({"scratch_gib": "x"}, SCRATCH, IMAGES).scratch_gib == "20"
    low = dataclasses.replace(SCRATCH, max_scratch_gib=8.0)
    assert defaults_from_last_choice({}, low, IMAGES).scratch_gib == "8"
    assert defaults_from_last_choice({"scratch_gib": "40"}, LIMITS, IMAGES).scratch_gib == ""  # no scratch


# ---- the settings and the hub's view ----------------------------------------------------------------

def test_the_largest_tmpdisk_of_each_partition_whatever_the_nodes_state():
    nodes = [node("n1", ["interactive", "batch"], 50_000), node("n2", ["batch"], 400_000), node("n3", ["gpu"], 0)]
    nodes.append(dataclasses.replace(node("n4", ["batch"], 900_000), state="down"))
    assert scratch_capacity_mb(nodes) == {"interactive": 50_000, "batch": 900_000, "gpu": 0}
    assert scratch_capacity_mb([]) == {}


class ViewedSettings:
    """CarmeSpawnerSettings with a stand-in for the hub's view's nodes (the spawner's `view`)."""

    def __new__(cls, nodes=(), snapshot_started=0.0, **settings):
        from carme_spawner.settings import CarmeSpawnerSettings

        class Settings(CarmeSpawnerSettings):
            view = SimpleNamespace(nodes=SimpleNamespace(items={n.name: n for n in nodes},
                                                         snapshot_started=snapshot_started))

        return Settings(**settings)


def test_spawn_limits_carry_the_scratch_the_users_limit_the_default_and_the_nodes():
    from carme_spawner.images import images_from_setting

    images = images_from_setting({"base": "/opt/carme/images/base.sif"})
    settings = ViewedSettings([node("n1", ["interactive"], 60 * GIB)], snapshot_started=1.0,
                              default_image="base", scratch={"node_dir": "/ssd/{node}"}, scratch_default_gib=25)
    assert settings.scratch_capacity() == {"interactive": 60 * GIB}
    limits = settings.spawn_limits(images, Limits(scratch_gib=40.0), scratch_capacity=settings.scratch_capacity())
    assert (limits.scratch, limits.max_scratch_gib, limits.default_scratch_gib) == (True, 40.0, 25)
    assert dict(limits.scratch_capacity_mb) == {"interactive": 60 * GIB}
    assert parse_options({}, limits).scratch_gib == 25
    assert "above your limit of 40 GiB" in str(error_for({"scratch_gib": 41}, limits))
    assert ViewedSettings(snapshot_started=0.0).scratch_capacity() is None  # no snapshot yet: SLURM decides
    off = ViewedSettings(default_image="base").spawn_limits(images, Limits(scratch_gib=40.0))
    assert off.scratch is False and parse_options({}, off).scratch_gib == 0


def test_the_default_setting_is_checked():
    from traitlets import TraitError

    from carme_spawner.settings import CarmeSpawnerSettings

    with pytest.raises(TraitError, match="scratch_default_gib must be 0..1000000 GiB"):
        CarmeSpawnerSettings(scratch_default_gib=-1)


def test_the_scratch_services_default_gib_reaches_the_spawner():
    from carme_services.scratch import hub_service
    from carme_services.wiring import ServiceSettings

    wiring = hub_service(ServiceSettings(key="scratch", values={"default_gib": 50}))
    spawner = wiring["config"]["CarmeSpawner"]
    assert spawner["scratch_default_gib"] == 50 and "default_gib" not in spawner["scratch"]  # not the prolog's layout
    assert hub_service(ServiceSettings(key="scratch", values={}))["config"]["CarmeSpawner"]["scratch_default_gib"] == 0
    with pytest.raises(ValueError, match=r"carme.scratch.*default_gib: must be 0..1000000 GiB"):
        hub_service(ServiceSettings(key="scratch", values={"default_gib": -5}))


# ---- the spawner: refused before sbatch --------------------------------------------------------------

def test_the_spawner_refuses_before_sbatch_with_a_400_naming_the_limit(monkeypatch):
    """The spawner's one parse (a spawn's and an estimate's): the user's quota and the view's nodes
    reach parse_options, and its refusal is the spawn's 400; nothing is submitted."""
    from carme_spawner import CarmeSpawner
    from carme_spawner.accounts import JobAccount
    from carme_spawner.images import images_from_setting
    from carme_spawner.prepared import UserQuota
    from carme_spawner.spawner import SpawnFailed

    nodes = [node("n1", ["interactive"], 50 * GIB), node("n2", ["batch"], 400 * GIB)]

    class Spawner(CarmeSpawner):
        view = SimpleNamespace(nodes=SimpleNamespace(items={n.name: n for n in nodes}, snapshot_started=1.0),
                               reservations=SimpleNamespace(items={}))

    spawner = Spawner(default_image="base", scratch={"node_dir": "/ssd/{node}"}, scratch_default_gib=10)

    async def job_account():
        return JobAccount("alice", 2000, 2000, "/home/alice", "user")

    async def image_choices(account):
        return images_from_setting({"base": "/opt/carme/images/base.sif"})

    async def user_quota(account, project=None):
        return UserQuota(Limits(scratch_gib=100.0), (), None)

    async def no_sbatch(*args, **kwargs):
        raise AssertionError("sbatch must not run")

    monkeypatch.setattr(spawner, "job_account", job_account)
    monkeypatch.setattr(spawner, "image_choices", image_choices)
    monkeypatch.setattr(spawner, "user_quota", user_quota)
    monkeypatch.setattr("carme_spawner.spawner.sbatch", no_sbatch)

    def refusal(options) -> SpawnFailed:
        with pytest.raises(SpawnFailed) as info:
            asyncio.run(spawner.parse_request(options))
        return info.value

    over_limit = refusal({"scratch_gib": 150, "partition": "batch"})
    assert over_limit.status_code == 400
    assert str(over_limit) == "scratch_gib: 150 GiB is above your limit of 100 GiB of job scratch per server"
    over_node = refusal({"scratch_gib": 60})
    assert over_node.status_code == 400 and str(over_node).startswith(
        "scratch_gib: at most 50 GiB fit on the local SSD of the largest node of partition interactive")
    prepared = asyncio.run(spawner.parse_request({"scratch_gib": 80, "partition": "batch"}))
    assert prepared.request.scratch_gib == 80
    assert asyncio.run(spawner.parse_request({})).request.scratch_gib == 10
