"""Issue 21, acceptance 1, in a real browser on the real hub and SLURM: the Sessions page's running card
shows image, GPUs, node and a time remaining that counts down; with the cluster's a100 GPUs kept
busy a queued card shows the pending reason and SLURM's expected start; after Stop the card says
completed, and Relaunch starts a job with the same image, GPUs and runtime (`scontrol show job`).
Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub
from tests.integration.hub import QUOTA_ADMIN
from tests.integration.waiting import wait_until

from .conftest import login

pytestmark = pytest.mark.integration

PUBLIC = 20040
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__sessions": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 1,
                                                 "poll_seconds": 1}),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-sessb-",
                     harness_scopes=QUOTA_ADMIN) as hub:
        for user in ("alice", "bob"):
            hub.ensure_user(user)
        # their associations as this hub's policy has them before any job: a QOS that another module's hub left
        # and this hub's first sync takes away strands a pending job as InvalidQOS
        hub.sync_quota()
        yield hub


def seconds_left(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+) h )?(\d+) min (\d+) s", text.strip())
    assert m, text
    return int(m[1] or 0) * 3600 + int(m[2]) * 60 + int(m[3])


def test_a_queued_card_shows_the_pending_reason_and_the_expected_start(hub, page):
    blockers = [subprocess.run(["sbatch", "--parsable", "-J", "carme-sessb-blocker", "-p", "batch", "-w", node,
                                f"--gres=gpu:a100:{count}", "-t", "20", "-o", "/dev/null", "--wrap", "sleep 1200"],
                               check=True, capture_output=True, text=True).stdout.strip()
                for node, count in (("carme-n1", 4), ("carme-n2", 2))]
    try:
        assert wait_until(lambda: all(slurm_probe.job(b).get("JobState") == "RUNNING" for b in blockers), 30)
        r = hub.start_server("bob", GPU)
        assert r.status_code in (201, 202), r.text
        login(page, hub, "bob")
        page.goto(f"{hub.url}/services/carme-sessions/")
        queued = page.wait_for_selector("[data-status=queued] [data-queued]", timeout=60_000)
        text = queued.inner_text()
        assert "waiting for GPUs/CPUs/memory to become free" in text and "Time requested: 30 min" in text, text
        page.wait_for_selector("text=SLURM expects it to start at", timeout=30_000)
        page.artifact("queued-card")
    finally:
        subprocess.run(["scancel", *blockers], check=False)
        hub.stop_server("bob")


def test_the_running_card_counts_down_and_relaunch_after_stop_starts_the_same_choices(hub, page):
    login(page, hub, "alice")
    r = hub.start_server("alice", GPU)
    assert r.status_code in (201, 202), r.text
    old = str(hub.wait_ready("alice")["state"]["job_id"])
    page.goto(f"{hub.url}/services/carme-sessions/")
    card = page.wait_for_selector("[data-status=running]", timeout=30_000)
    facts = card.inner_text()
    assert "pytorch-gpu" in facts and "1 × a100" in facts and slurm_probe.job(old)["BatchHost"] in facts, facts
    # from here on the page's own requests to the service: its polls must be answered with alice's
    # cards, and none may start an OAuth round (its new cookie left the forms' _xsrf stale: a 403)
    seen = []
    page.on("response", lambda resp: seen.append((resp.status, resp.url.split("?")[0]))
            if "/services/carme-sessions/" in resp.url else None)
    first = seconds_left(page.inner_text("[data-end]"))
    page.wait_for_timeout(2500)
    later = seconds_left(page.inner_text("[data-end]"))
    assert 25 * 60 < later < first <= 30 * 60, (first, later)  # it counts down in the page
    polls = [(status, url) for status, url in seen if "/api/" in url]
    assert polls and all(status == 200 for status, _ in polls), seen
    page.artifact("running-card")

    page.click("button[data-action=stop]")
    ended = page.wait_for_selector("[data-status=completed] [data-ended]", timeout=60_000)
    assert "stopped from the hub" in ended.inner_text()
    page.artifact("completed-card")
    # the cards redraw every second: the click must land on the button and post its form (a page comes back)
    with page.expect_navigation(wait_until="load", timeout=60_000):
        page.click("[data-status=completed] button[data-action=relaunch]")
    notice = page.query_selector("#sessions-notice")
    assert notice and "starting again with the same choices" in notice.inner_text(), (
        page.url, page.inner_text("body")[:1500],
        [line for line in hub.log_tail(100000).splitlines() if re.search(r"xsrf|403|carme-sessions/oauth|expired|No Hub user|authoriz|302", line, re.I)][-30:])
    new = str(hub.wait_ready("alice")["state"]["job_id"])
    assert new != old
    job = slurm_probe.job(new)
    assert job["TimeLimit"] == "00:30:00" and "gpu:a100:1" in job.get("TresPerNode", ""), job
    assert "pytorch-gpu.sif" in slurm_probe.batch_script(new)
    page.wait_for_selector("[data-status=running]", timeout=30_000)
    page.artifact("relaunched-card")
    assert not [url for _, url in seen if "oauth" in url], seen
    hub.stop_server("alice")
