"""Issue 12, acceptance 8: a site using wrapspawner's ProfilesSpawner lists CarmeSpawner as a profile;
the port report reaches the child spawner that submitted the job, and the server becomes ready."""

from __future__ import annotations

import json

import pytest
import requests

from . import slurm_probe
from .conftest import running_hub

pytestmark = pytest.mark.integration

PROFILES = [
    ["Carme: CPU container", "carme-cpu", "carme_spawner.CarmeSpawner", {"default_image": "python-cpu"}],
    ["Carme: GPU container", "carme-gpu", "carme_spawner.CarmeSpawner", {"default_image": "pytorch-gpu"}],
]


@pytest.fixture(scope="module")
def hub(cluster):
    env = {
        "CARME__JupyterHub__spawner_class": "wrapspawner.ProfilesSpawner",
        "CARME__ProfilesSpawner__profiles": json.dumps(PROFILES),
    }
    with running_hub(extra_env=env) as hub:
        yield hub


def test_carme_profile_under_profilesspawner(hub):
    r = hub.start_server("alice", {"profile": "carme-cpu", "gpus": 0})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    state = hub.server_model("alice")["state"]
    assert state["profile"] == "carme-cpu"
    job_id = state["child_state"]["job_id"]
    job = slurm_probe.job(job_id)
    assert job["JobState"] == "RUNNING" and job["UserId"].startswith("alice(")
    assert "/opt/carme/images/python-cpu.sif" in slurm_probe.batch_script(job_id)
    token = hub.user_token("alice")
    r = requests.get(f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    hub.stop_server("alice")
    assert not slurm_probe.in_queue(job_id)
