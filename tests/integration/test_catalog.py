"""Issue 3: the container catalog, its service and the spawn options, on a real hub and SLURM.

The hub serves a copy of the example catalog, so tests can edit and break its files.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from container_catalog import EXAMPLE_CATALOG

from . import slurm_probe
from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalog_dir():
    directory = Path(tempfile.mkdtemp(prefix="carme-test-catalog-"))
    for f in EXAMPLE_CATALOG.iterdir():
        shutil.copy(f, directory / f.name)
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(cluster, catalog_dir):
    with running_hub() as hub:
        hub.extra_env["CARME__carme__catalog"] = json.dumps(
            dict(json.loads(hub.env()["CARME__carme__catalog"]), catalog_dir=str(catalog_dir))
        )
        hub.restart()
        yield hub


def carme_jobs() -> list[str]:
    return sorted(slurm_probe.carme_jobs("carme-test-"))


def service(hub) -> str:
    return f"{hub.url}/services/carme-catalog"


def login(hub, user: str) -> requests.Session:
    """A browser-like session logged in through the hub's login form."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=10)
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": hub.env()["CARME_DEMO_PASSWORD"], "_xsrf": s.cookies.get("_xsrf")},
        timeout=10,
    )
    assert r.status_code == 200 and "/hub/login" not in r.url, r.url
    return s


def test_api_spawn_runs_the_chosen_image_and_bad_options_submit_nothing(hub):
    """Acceptance 2."""
    hub.ensure_user("alice")
    bad = [
        ({"image": "no-such-image"}, "image"),
        ({"image": "rapids-gpu", "gpus": 1}, "image"),  # power and admin only
        ({"image": "pytorch-gpu", "gpus": -1}, "gpus"),
        ({"image": "pytorch-gpu", "gpus": 99}, "gpus"),
        ({"image": "pytorch-gpu", "gpus": 0}, "gpus"),  # the image needs a GPU
        ({"image": "pytorch-gpu", "gpus": 1, "runtime": "soon"}, "runtime"),
        ({"image": "pytorch-gpu", "gpus": 1, "runtime": "999:00"}, "runtime"),
        ({"image": "pytorch-gpu", "gpus": 1, "partition": "nope"}, "partition"),
        ({"image": "pytorch-gpu", "gpus": 1, "cmd": "sh -c id"}, "cmd"),
    ]
    before = carme_jobs()
    for options, field in bad:
        r = hub.start_server("alice", options)
        assert 400 <= r.status_code < 500, (options, r.status_code, r.text)
        assert r.json()["message"].startswith(f"{field}: "), (options, r.text)
    assert carme_jobs() == before

    r = hub.start_server("alice", {"image": "tensorflow-gpu", "gpus": 1, "runtime": "1:00"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    script = slurm_probe.batch_script(job_id)
    assert "apptainer exec --nv --bind /home/alice,/tmp --env TF_CPP_MIN_LOG_LEVEL=1 /opt/carme/images/tensorflow-gpu.sif" in script, script
    assert slurm_probe.job(job_id)["TimeLimit"] == "01:00:00"
    hub.stop_server("alice")


def test_power_user_adds_an_image_and_starts_it_a_normal_user_cannot(hub):
    """Acceptance 4."""
    for user in ("dave", "alice"):
        hub.ensure_user(user)
    r = hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["dave"]})
    assert r.status_code == 200, r.text
    image = {"id": "dave-torch", "name": "Dave's PyTorch", "image": "/opt/carme/images/pytorch-gpu.sif", "gpu": "optional"}

    r = requests.post(f"{service(hub)}/api/images", json=image, headers={"Authorization": f"token {hub.user_token('alice')}"}, timeout=10)
    assert r.status_code == 403, r.text
    assert "power-user role" in r.json()["message"]

    dave = {"Authorization": f"token {hub.user_token('dave')}"}
    for bad, field in (({**image, "image": "/etc/shadow.sif"}, "image"), ({**image, "env": {"A": "1"}}, "env"),
                       ({**image, "image": "/opt/carme/images/../x.sif"}, "image")):
        r = requests.post(f"{service(hub)}/api/images", json=bad, headers=dave, timeout=10)
        assert r.status_code == 400 and r.json()["message"].startswith(f"{field}:"), r.text
    r = requests.post(f"{service(hub)}/api/images", json=image, headers=dave, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "dave" and r.json()["section"] == "user"

    listed = requests.get(f"{service(hub)}/api/images", headers=dave, timeout=10).json()
    assert "dave-torch" in [i["id"] for i in listed["images"]] and listed["role"] == "power"
    r = requests.get(f"{service(hub)}/api/images/dave-torch", headers={"Authorization": f"token {hub.user_token('alice')}"}, timeout=10)
    assert r.status_code == 404  # dave's own section

    time.sleep(1.5)  # the hub's catalog re-reads changed files every second here
    r = hub.start_server("dave", {"image": "dave-torch", "gpus": 0})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("dave")
    assert "/opt/carme/images/pytorch-gpu.sif jupyterhub-singleuser" in slurm_probe.batch_script(hub.job_id("dave")).replace(
        "/opt/carme/venv/bin/", ""
    )
    hub.stop_server("dave")
    r = hub.start_server("alice", {"image": "dave-torch", "gpus": 0})
    assert r.status_code == 400 and r.json()["message"].startswith("image:"), r.text


def test_catalog_edits_show_without_restart_and_a_broken_file_is_reported(hub, catalog_dir):
    """Acceptance 5."""
    hub.ensure_user("erin")
    erin = login(hub, "erin")
    form = erin.get(f"{hub.url}/hub/spawn/erin", timeout=10).text
    assert 'value="python-cpu"' in form and 'value="rapids-gpu"' not in form  # rapids: power and admin only

    entry = catalog_dir / "python-cpu.yaml"
    entry.write_text(re.sub(r"(?m)^name: .*$", "name: Python CPU (edited live)", entry.read_text()))
    (catalog_dir / "broken.yaml").write_text("id: broken\nname: [not, text]\nimage: relative.sif\n")
    assert wait_until(lambda: "Python CPU (edited live)" in erin.get(f"{hub.url}/hub/spawn/erin", timeout=10).text, 15)
    form = erin.get(f"{hub.url}/hub/spawn/erin", timeout=10).text
    assert 'value="pytorch-gpu"' in form and 'value="broken"' not in form  # the good entries still load

    assert wait_until(lambda: "broken.yaml" in hub.log_tail(2000), 10), "the broken file is not in the hub log"
    hub.ensure_user("admin")
    admin = {"Authorization": f"token {hub.user_token('admin')}"}
    page = requests.get(f"{service(hub)}/", headers=admin, timeout=10)
    assert page.status_code == 200 and "broken.yaml" in page.text and "could not be loaded" in page.text
    problems = requests.get(f"{service(hub)}/api/problems", headers=admin, timeout=10).json()["problems"]
    assert any(p["path"].endswith("broken.yaml") for p in problems)
    r = requests.get(f"{service(hub)}/api/problems", headers={"Authorization": f"token {hub.user_token('erin')}"}, timeout=10)
    assert r.status_code == 403
    (catalog_dir / "broken.yaml").unlink()


def test_a_demoted_power_user_s_shared_image_is_no_longer_offered(hub):
    """Issue 16, findings 3 and 4: a shared image is picked as owner/id, never by a site id, and
    stops being offered (API, spawn form, spawn) once its owner is no longer a power user."""
    for user in ("dave", "erin"):
        hub.ensure_user(user)
    assert hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["dave"]}).status_code == 200
    dave = {"Authorization": f"token {hub.user_token('dave')}"}
    erin = {"Authorization": f"token {hub.user_token('erin')}"}
    image = {"id": "pycpu", "name": "Dave's Python", "image": "/opt/carme/images/python-cpu.sif", "gpu": "none",
             "shared": True}
    r = requests.post(f"{service(hub)}/api/images", json=image, headers=dave, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["choice_id"] == "dave/pycpu"  # shared ids carry their owner: never a site id

    def offered_to_erin() -> set[str]:
        return {i["choice_id"] for i in requests.get(f"{service(hub)}/api/images", headers=erin, timeout=10).json()["images"]}

    assert {"python-cpu", "dave/pycpu"} <= offered_to_erin()
    erin_web = login(hub, "erin")
    form = wait_until(lambda: (lambda text: text if 'value="dave/pycpu"' in text else None)(
        erin_web.get(f"{hub.url}/hub/spawn/erin", timeout=10).text), 10)  # the hub re-reads every second here
    assert form and "shared by dave" in form

    r = hub.session.delete(f"{hub.api}/groups/power/users", json={"users": ["dave"]})
    assert r.status_code == 200, r.text
    form = login(hub, "erin").get(f"{hub.url}/hub/spawn/erin", timeout=10).text
    assert 'value="dave/pycpu"' not in form and 'value="python-cpu"' in form  # the hub checks at once
    r = hub.start_server("erin", {"image": "dave/pycpu", "gpus": 0})
    assert r.status_code == 400 and r.json()["message"].startswith("image: "), r.text
    assert wait_until(lambda: "dave/pycpu" not in offered_to_erin(), 30)  # the service within its cache time
