"""Issue 21, acceptance 3 and the culler's warning inside JupyterLab, in a real browser on the real hub,
SLURM and the carme-sessions and carme-culler services, through the Carme lab extension (prebuilt,
installed by dev/install.sh) and its server part (carme_lab.relay, the session's own token):

- a 4-minute job with warnings at 3 and 1 minute: JupyterLab's notification area shows the warning
  (screenshot) with Extend; an Extend beyond the user's max runtime is refused naming the limit and
  the warning comes back; Extend +5 min changes the job's TimeLimit in `scontrol show job`; the status
  bar shows the job, its GPU, node and time left;
- the STAND-IN nvidia-smi reporting 0 % on bob's GPU: the culler's warning appears in his JupyterLab
  with Keep running, and pressing it restarts his idle clock.
Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub
from tests.integration.test_culler import UTIL, set_util
from tests.integration.waiting import wait_until

from .conftest import login

pytestmark = pytest.mark.integration

PUBLIC = 20100
LIMITS = {"user": {"max_servers": 2, "gpus_per_job": 2, "gpu_hours": 200, "max_runtime_minutes": 10}}
SESSIONS = {"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 1, "poll_seconds": 2, "warn_minutes": [3, 1],
            "extend_choices": [5, 30]}
CULLER = {"url": f"http://127.0.0.1:{PUBLIC + 7}", "interval": 1, "delay": 1, "idle_minutes": 0.1,
          "warn_minutes": 2, "gpu_threshold": 5, "keep_running_max": 1, "keep_running_minutes": 60,
          "node_command": ["env", "CARME_STANDIN_NODE={node}"]}


def all_gpus(util: int) -> None:
    for node, count in (("carme-n1", 8), ("carme-n2", 8)):
        set_util(node, {i: util for i in range(count)})


@pytest.fixture(scope="module")
def hub(cluster):
    shutil.rmtree(UTIL, ignore_errors=True)
    all_gpus(80)  # busy: the culler leaves the walltime test alone
    env = {"CARME__carme__sessions": json.dumps(SESSIONS), "CARME__carme__culler": json.dumps(CULLER),
           "CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-labw-") as hub:
        for user in ("alice", "bob"):
            hub.ensure_user(user)
        yield hub
    shutil.rmtree(UTIL, ignore_errors=True)


def open_lab(page, hub, user: str, spawn: dict) -> str:
    r = hub.start_server(user, spawn)
    assert r.status_code in (201, 202), r.text
    job_id = str(hub.wait_ready(user)["state"]["job_id"])
    login(page, hub, user, lands_on=rf".*/user/{user}/lab.*")  # the hub sends her to her running server
    page.wait_for_selector(".carme-lab-status >> text=Job", timeout=60_000)
    return job_id


def test_the_walltime_warning_shows_in_jupyterlab_and_extend_changes_the_time_limit(hub, page):
    job_id = open_lab(page, hub, "alice", {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 4})
    status = page.inner_text(".carme-lab-status")
    node = slurm_probe.job(job_id)["BatchHost"]
    assert re.fullmatch(rf"Job {job_id} · 1× a100 · {node} · [0-4]:[0-5]\d left", status), status

    # the 3-minute warning: a minute after the job started, in JupyterLab's notification area
    warning = page.get_by_text("This session ends in")
    warning.wait_for(timeout=120_000)
    page.wait_for_timeout(800)  # the toast has slid in
    page.artifact("walltime-warning")
    page.get_by_role("button", name="Extend +30 min").click()  # 4 + 30 > 10 min
    refused = page.get_by_text("Extend refused: runtime per server")
    refused.wait_for()
    assert "runtime per server: up to 10 min" in refused.inner_text(), refused.inner_text()
    page.wait_for_timeout(800)  # the toast has slid in
    page.artifact("extend-refused")
    assert slurm_probe.job(job_id)["TimeLimit"] == "00:04:00"

    # the warning comes back with its choices (the refused one's toast fades out meanwhile)
    page.wait_for_function("() => document.querySelectorAll('.Toastify__toast .jp-toast-button[title=\"Extend +5 min\"]')"
                           ".length === 1")
    page.get_by_role("button", name="Extend +5 min").click()
    page.get_by_text("Extended by 5 min: the time limit is now 9 min.").wait_for()
    assert wait_until(lambda: slurm_probe.job(job_id)["TimeLimit"] == "00:09:00", 20), slurm_probe.job(job_id)
    page.wait_for_function("() => /· [5-8]:\\d\\d left/.test(document.querySelector('.carme-lab-status').textContent)",
                           timeout=30_000)
    page.artifact("extended")
    hub.stop_server("alice")


def test_the_cullers_warning_shows_in_jupyterlab_and_keep_running_resets_the_clock(hub, page):
    job_id = open_lab(page, hub, "bob", {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 10})
    all_gpus(0)  # bob's GPU idle, and his JupyterLab too
    warning = page.get_by_text("This server is idle")
    warning.wait_for(timeout=90_000)
    assert "the idle culler stops it in" in warning.inner_text() and "1 press left" in warning.inner_text()
    page.wait_for_timeout(800)  # the toast has slid in
    page.artifact("idle-warning")
    page.get_by_role("button", name="Keep running").click()
    page.get_by_text("Kept running: the idle clock starts again (0 more presses).").wait_for()
    page.wait_for_timeout(800)  # the toast has slid in
    page.artifact("kept-running")
    assert subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip() == "RUNNING"
    hub.stop_server("bob")
