"""Issue 23, acceptance 1, in a real browser on the real hub and SLURM: carol (an admin) sees alice's running
server on the cockpit (image, GPUs, node, a time left that counts down) and both nodes' GPUs; she drains
carme-n2 with a reason (`sinfo` shows it) and resumes it, stops alice's server (its job leaves squeue), and
opens the job history with its charts. As alice the cockpit is 403. Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub
from tests.integration.test_culler import UTIL, set_util
from tests.integration.waiting import wait_until

from .conftest import login

pytestmark = pytest.mark.integration

PUBLIC = 20540
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
NAME = "carme-cockpit"


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__cockpit": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 7}", "cache_seconds": 1}),
           "CARME__carme__culler": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 9}", "interval": 1, "delay": 1,
                                               "idle_minutes": 600, "node_command": ["env", "CARME_STANDIN_NODE={node}"]}),
           "CARME__SlurmView__node_interval": "2",
           "CARME__Authenticator__admin_users": json.dumps(["admin", "carol"])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-cockb-") as hub:
        for user in ("alice", "carol"):
            hub.ensure_user(user)
        yield hub


def sinfo_node(node: str) -> tuple[str, str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T|%E"], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[0]
    state, _, reason = out.partition("|")
    return state, reason


def test_carol_sees_alices_server_drains_and_resumes_a_node_and_stops_the_server(hub, page):
    r = hub.start_server("alice", GPU)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    node = slurm_probe.job(job_id)["BatchHost"]
    login(page, hub, "carol")
    page.goto(f"{hub.url}/services/{NAME}/")
    row = page.wait_for_selector(f"#cockpit-jobs tr[data-job='{job_id}']")
    assert row.query_selector(".cockpit-image").inner_text() == "pytorch-gpu"
    assert row.query_selector(".cockpit-gpus").inner_text() == "1 × a100"
    assert row.query_selector(".cockpit-node").inner_text() == node
    left = row.query_selector(".cockpit-left")
    first = left.inner_text()
    assert "min" in first and wait_until(lambda: left.inner_text() != first, 5)  # it counts down
    for name in ("carme-n1", "carme-n2"):
        assert page.query_selector(f"#cockpit-nodes tr[data-node='{name}']")
    page.artifact("overview-with-alices-server")

    # her GPU's utilisation over time on the job's page (carme-culler's samples of the stand-in nvidia-smi)
    try:
        def sampled(util: int) -> bool:
            page.goto(f"{hub.url}/services/{NAME}/jobs/{job_id}")
            return page.get_attribute("#job-last-sample", "data-utilization") == f"{util:.1f}" \
                if page.query_selector("#job-last-sample") else False

        for util in (80, 60, 0):
            set_util(node, {i: util for i in range(8)})
            assert wait_until(lambda: sampled(util), 30, interval=1), util
        page.wait_for_selector("#job-utilisation svg")
        page.artifact("job-gpu-utilisation")
        page.goto(f"{hub.url}/services/{NAME}/")
        page.wait_for_selector("#cockpit-utilisation svg")
        page.wait_for_selector("#cockpit-idle-hours svg")
        page.locator("#cockpit-gpu-use").scroll_into_view_if_needed()
        page.artifact("overview-gpu-use")
    finally:
        (UTIL / f"{node}.util").unlink(missing_ok=True)

    reason = f"cockpit browser {secrets.token_hex(3)}"
    try:
        page.fill("tr[data-node='carme-n2'] .cockpit-drain input[name=reason]", reason)
        page.click("tr[data-node='carme-n2'] .cockpit-drain button")
        page.wait_for_selector("#cockpit-notice")
        assert reason in page.inner_text("#cockpit-notice")
        state, shown = sinfo_node("carme-n2")
        assert state in ("drained", "draining") and shown == reason, (state, shown)

        def drained_on_page():
            page.goto(f"{hub.url}/services/{NAME}/")
            return page.query_selector("tr[data-node='carme-n2'][data-status^='drain']") is not None
        assert wait_until(drained_on_page, 30, interval=1)
        assert reason in page.inner_text("tr[data-node='carme-n2'] .cockpit-reason")
        page.artifact("carme-n2-drained")
        page.click("tr[data-node='carme-n2'] .cockpit-resume button")
        page.wait_for_selector("#cockpit-notice")
        assert sinfo_node("carme-n2")[0] not in ("drained", "draining")
    finally:  # never leave the shared cluster drained
        if sinfo_node("carme-n2")[1] == reason:
            subprocess.run(["scontrol", "update", "NodeName=carme-n2", "State=RESUME"], check=False)

    page.goto(f"{hub.url}/services/{NAME}/")
    page.click(f"#cockpit-jobs tr[data-job='{job_id}'] .cockpit-stop button")
    page.wait_for_selector("#cockpit-notice")
    assert "Stopping alice/(default)" in page.inner_text("#cockpit-notice")
    assert wait_until(lambda: not slurm_probe.in_queue(job_id), 60), slurm_probe.job(job_id)
    page.artifact("alices-server-stopped")

    page.goto(f"{hub.url}/services/{NAME}/history?start=1d&user=alice")
    page.wait_for_selector("#chart-gpu-hours svg")
    page.wait_for_selector("#chart-wait svg")
    page.artifact("history")


def test_as_alice_the_cockpit_is_403(hub, page):
    login(page, hub, "alice")
    answer = page.goto(f"{hub.url}/services/{NAME}/")
    assert answer.status == 403
    page.artifact("alice-403")
