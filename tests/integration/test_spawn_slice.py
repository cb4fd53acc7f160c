"""Issue 2 acceptance: a containerized JupyterLab on a GPU through the real local SLURM.

Real SLURM (dev/cluster.sh), real JupyterHub + configurable-http-proxy, the stand-in apptainer
(bwrap) on PATH. Each test says which acceptance item it shows.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests

from . import slurm_probe
from .kernel import run_code
from .waiting import wait_until

pytestmark = pytest.mark.integration


async def test_gpu_server_runs_as_user_in_container_and_stops(hub):
    """Acceptance 1 and 2: API spawn with {"gpus": 1} -> job as alice with gpu:1, reachable
    through the proxy, one GPU inside; the script has the apptainer line; stop -> job leaves squeue."""
    r = hub.start_server("alice", {"gpus": 1})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    assert job_id.isdigit(), hub.server_model("alice")

    job = slurm_probe.job(job_id)
    assert job["UserId"].startswith("alice("), job
    assert job["JobState"] == "RUNNING"
    assert "gres/gpu=1" in job.get("TRES", "") or "gpu:1" in job.get("TresPerNode", ""), job

    script = slurm_probe.batch_script(job_id)
    # the catalog's pytorch-gpu entry adds its own environment (--env) to the line
    assert re.search(r"apptainer exec --nv --bind /home/alice,/tmp (--env \S+ )*/opt/carme/images/pytorch-gpu.sif ", script), script
    assert hub.token not in script
    alice_token = hub.user_token("alice")
    assert alice_token not in script

    r = requests.get(f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {alice_token}"}, timeout=10)
    assert r.status_code == 200, r.text

    out = await run_code(
        f"{hub.url}/user/alice/",
        alice_token,
        "import os; print(os.getuid(), os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('APPTAINER_CONTAINER'))",
    )
    uid, cuda, container = out.split()
    assert uid == str(subprocess.run(["id", "-u", "alice"], capture_output=True, text=True).stdout.strip())
    assert cuda.isdigit(), f"one GPU index expected, got {cuda!r}"
    assert container == "/opt/carme/images/pytorch-gpu.sif"

    hub.stop_server("alice")
    assert wait_until(lambda: not slurm_probe.in_queue(job_id), 30), slurm_probe.job(job_id)


def test_server_survives_hub_restart(hub):
    """Acceptance 3: restart the hub process while bob's server runs -> still ready and reachable, same job."""
    hub.start_server("bob", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("bob")
    job_id = hub.job_id("bob")
    token = hub.user_token("bob")

    hub.restart()

    model = hub.wait_ready("bob", timeout=60)
    assert model["ready"]
    assert hub.job_id("bob") == job_id
    assert slurm_probe.in_queue(job_id)
    r = requests.get(f"{hub.url}/user/bob/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    hub.stop_server("bob")


def test_job_killed_outside_is_noticed_within_a_poll_interval(hub):
    """Acceptance 4: scancel from outside -> the hub shows the server stopped within the poll interval."""
    hub.start_server("carol", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("carol")
    job_id = hub.job_id("carol")

    subprocess.run(["scancel", job_id], check=True)
    killed = time.monotonic()
    stopped = wait_until(lambda: not (hub.server_model("carol") or {}).get("ready"), timeout=30)
    noticed_after = time.monotonic() - killed
    assert stopped, hub.server_model("carol")
    # one interval for the watch, one for the hub's poll loop, plus slack for a loaded 2-core machine
    assert noticed_after <= 2 * hub.poll_interval + 5, f"noticed after {noticed_after:.1f} s"


def test_one_squeue_per_interval_for_five_servers(hub):
    """Acceptance 5: with 5 servers running, squeue runs once per poll interval in total."""
    users = ("alice", "bob", "carol", "dave", "erin")
    for user in users:
        r = hub.start_server(user, {"gpus": 0, "image": "python-cpu"})
        assert r.status_code in (201, 202), r.text
    for user in users:
        hub.wait_ready(user)

    window = 8 * hub.poll_interval
    start = time.time()
    time.sleep(window)
    calls = [t for t in hub.squeue_calls() if start <= t < start + window]
    intervals = window / hub.poll_interval
    print(f"squeue calls in {window:.0f} s with 5 servers: {len(calls)} (interval {hub.poll_interval} s)")
    assert intervals - 1 <= len(calls) <= intervals + 1, calls
    for user in users:
        hub.stop_server(user)


def test_named_servers_are_separate_jobs(hub):
    """Issue 12, acceptance 6: two named servers of one user run as two jobs; stopping one leaves the other."""
    for name in ("one", "two"):
        r = hub.start_server("dave", {"gpus": 0, "image": "python-cpu"}, server=name)
        assert r.status_code in (201, 202), r.text
    for name in ("one", "two"):
        hub.wait_ready("dave", name)
    one, two = hub.job_id("dave", "one"), hub.job_id("dave", "two")
    assert one != two and slurm_probe.in_queue(one) and slurm_probe.in_queue(two)
    assert slurm_probe.job(one)["JobName"] == "carme-test-dave-one"
    assert slurm_probe.job(two)["Comment"] == "carme:dave/two"

    hub.stop_server("dave", "one")
    assert wait_until(lambda: not slurm_probe.in_queue(one), 30)
    time.sleep(2 * hub.poll_interval)
    assert hub.server_model("dave", "two")["ready"] and slurm_probe.in_queue(two)
    token = hub.user_token("dave")
    r = requests.get(f"{hub.url}/user/dave/two/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    hub.stop_server("dave", "two")
