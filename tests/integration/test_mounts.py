"""Issue 20 acceptance 3, on the real hub and SLURM: a project mount appears only in the containers of
its group's members; a missing global mount refuses the spawn, naming the path.

The hub runs with two site mounts (CarmeSpawner.mounts from the settings' override): a global,
read-only /data, and /projects/vision for the members of the hub group vision-lab (alice, not
bob). What the containers have is read from inside the running servers (a kernel, as a notebook
would). The STAND-IN apptainer makes a bind's mount point as apptainer does, so /projects/vision
exists only in the containers that bind it (it does not exist on the host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from . import slurm_probe
from .conftest import running_hub
from .hub import STANDINS
from .kernel import run_code

pytestmark = pytest.mark.integration

PORTS = (19700, 19781, 19701)
PREFIX = "carme-mnt-"
GROUP = "vision-lab"
CPU = {"gpus": 0, "image": "python-cpu"}

# what a notebook of the user sees: run inside the server (its container) by run_code
INSIDE = """
import errno, json, os
seen = {"data": open("/data/README").read(), "projects": os.path.lexists("/projects"),
        "vision": os.path.lexists("/projects/vision")}
try:
    open("/data/written-by-USER", "w").close()
    seen["data_write"] = "written"
except OSError as e:
    seen["data_write"] = errno.errorcode[e.errno]
if seen["vision"]:
    seen["plan"] = open("/projects/vision/plan.txt").read()
    open("/projects/vision/from-USER.txt", "w").write("USER was here")
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The file systems: a data set everyone may write to (only read_only can stop a write) and a project's."""
    for target in ("/data", "/projects"):  # the containers' mount points must not come from the host
        assert not os.path.lexists(target), f"{target} exists on this host: the test cannot tell a bind from it"
    root = Path(tempfile.mkdtemp(prefix="carme-mounts-", dir="/var/tmp"))
    root.chmod(0o755)
    data, vision = root / "data", root / "vision"
    for directory, name, text in ((data, "README", "site data\n"), (vision, "plan.txt", "vision plan\n")):
        directory.mkdir()
        directory.chmod(0o1777)
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(cluster, site):
    mounts = [{"source": str(site / "data"), "target": "/data", "read_only": True},
              {"source": str(site / "vision"), "target": "/projects/vision", "groups": [GROUP]}]
    with running_hub(ports=PORTS, job_prefix=PREFIX,
                     extra_env={"CARME__CarmeSpawner__mounts": json.dumps(mounts)}) as hub:
        for user in ("alice", "bob", "carol"):
            hub.ensure_user(user)
        r = hub.session.post(f"{hub.api}/groups/{GROUP}", json={"users": ["alice"]})
        assert r.status_code == 201, r.text
        yield hub


async def seen_inside(hub, user: str) -> dict:
    out = await run_code(f"{hub.url}/user/{user}/", hub.user_token(user), INSIDE.replace("USER", user))
    return json.loads(out)


async def test_the_project_mount_is_in_its_members_containers_only_and_data_is_read_only(hub, site):
    for user in ("alice", "bob"):
        r = hub.start_server(user, CPU)
        assert r.status_code in (201, 202), r.text
    for user in ("alice", "bob"):
        hub.wait_ready(user)
    scripts = {user: slurm_probe.batch_script(hub.job_id(user)) for user in ("alice", "bob")}
    data_bind, vision_bind = f"{site}/data:/data:ro", f"{site}/vision:/projects/vision:rw"
    assert f"--bind /home/alice,/tmp,{data_bind},{vision_bind} " in scripts["alice"], scripts["alice"]
    assert f"--bind /home/bob,/tmp,{data_bind} " in scripts["bob"], scripts["bob"]

    alice = await seen_inside(hub, "alice")
    assert alice == {"data": "site data\n", "projects": True, "vision": True, "data_write": "EROFS",
                     "plan": "vision plan\n"}, alice
    assert (site / "vision" / "from-alice.txt").read_text() == "alice was here"  # the project's own directory

    bob = await seen_inside(hub, "bob")
    # not an empty mount point, not a denied directory: bob's container has no such path at all
    assert bob == {"data": "site data\n", "projects": False, "vision": False, "data_write": "EROFS"}, bob
    assert sorted(p.name for p in (site / "data").iterdir()) == ["README"]  # neither write reached the data
    for user in ("alice", "bob"):
        hub.stop_server(user)


def test_a_missing_global_mount_refuses_the_spawn_naming_the_path_and_submits_no_job(hub, site):
    """The global mount's file system is gone when carol's server starts (as an unmounted one would be)."""
    data, away = site / "data", site / "data-unmounted"
    data.rename(away)
    try:
        r = hub.start_server("carol", CPU)
        events = hub.progress_events("carol", timeout=60)
    finally:
        away.rename(data)
    assert r.status_code == 503, r.text
    assert f"{data} is not there" in r.json()["message"], r.text
    final = events[-1]
    assert final.get("failed") and f"{data} is not there (a file system your server needs)" in final["message"], events
    assert not any("Submitted SLURM job" in e.get("message", "") for e in events), events
    model = hub.server_model("carol") or {}
    assert not model.get("ready") and not model.get("pending"), model
    assert f"{data} is not there" in (model.get("state") or {}).get("last_failure", ""), model
    assert slurm_probe.carme_jobs(f"{PREFIX}carol") == []  # sbatch never ran


def test_the_standin_makes_no_mount_point_on_the_host(site):
    """Below an existing host directory the STAND-IN cannot make a mount point without touching the
    host: it refuses, as its header says, instead of binding somewhere else."""
    target = Path("/var/tmp") / f"{site.name}-not-here" / "data"
    done = subprocess.run(["runuser", "-u", "bob", "--", str(STANDINS / "apptainer"), "exec", "--bind",
                           f"{site / 'data'}:{target}:ro", "/opt/carme/images/python-cpu.sif", "true"],
                          capture_output=True, text=True, cwd="/tmp")
    assert done.returncode == 255 and f"bind destination {target} must exist on the host" in done.stderr, done
    assert not target.parent.exists()
