"""Issue 12, acceptance 7: a hub start with an orphan job and a vanished job reports and handles
both, as configured (carme_services.reconcile, wired by jupyterhub_config.apply_services).

Own ports (18100/18181/18101, the service on 18103) and job prefix (carme-rec-): other suites may
run at the same time.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from carme_services.reconcile import READ_SCOPE

from . import slurm_probe
from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration

PORTS = (18100, 18181, 18101)
SERVICE_URL = "http://127.0.0.1:18103"  # the catalog service of the harness takes public port + 2
PREFIX = "carme-rec-"


def reconcile_env(policy: str, interval: float) -> dict[str, str]:
    setting = {"policy": policy, "grace": 0, "interval": interval, "url": SERVICE_URL}
    return {"CARME__carme__reconcile": json.dumps(setting)}


@pytest.fixture(scope="module")
def hub(cluster):
    # from the first start on: policy cancel with no grace, a pass every 2 s, so a server that is
    # spawning or running must never be taken for an orphan
    with running_hub(ports=PORTS, job_prefix=PREFIX, slurm_poll_interval=2, extra_env=reconcile_env("cancel", 2),
                     harness_scopes=(READ_SCOPE,)) as hub:
        yield hub


def report_url(hub) -> str:
    return f"{hub.url}/services/carme-reconcile/api/orphans"


def wait_for_pass(hub, after: float, timeout: float = 60) -> dict:
    """The service's report once it holds a pass begun after `after` (time.time())."""

    def fresh():
        try:
            r = hub.session.get(report_url(hub), timeout=5)
        except requests.RequestException:
            return None
        report = r.json() if r.status_code == 200 else {}
        return report if (report.get("last_pass") or 0) > after else None

    report = wait_until(fresh, timeout, interval=0.5)
    assert report, f"no reconcile pass within {timeout} s\n{hub.log_tail(80)}"
    return report


def submit_orphan(user: str = "bob") -> str:
    """A job that looks like Carme's (name and comment) but that no hub server knows, as `user`."""
    out = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "-J", f"{PREFIX}{user}",
         f"--comment=carme:{user}/", "-p", "interactive", "-t", "10", "-o", "/dev/null",
         "--wrap", "sleep 600"],
        capture_output=True, text=True, check=True, cwd="/tmp",
    ).stdout
    return out.strip().split(";")[0]


def restart_with(hub, policy: str) -> float:
    hub.extra_env.update(reconcile_env(policy, 300))  # one pass at start-up, the next in 5 min
    time.sleep(1.5)  # the jobs made while the hub was down are older than the hub's reading (grace 0)
    started = time.time()
    hub.start()
    return started


def test_report_needs_the_read_scope(hub):
    assert wait_for_pass(hub, 0)["policy"] == "cancel"
    hub.ensure_user("carol")
    carol = {"Authorization": f"token {hub.user_token('carol')}"}
    assert requests.get(report_url(hub), headers=carol, timeout=10).status_code == 403
    r = requests.get(report_url(hub), timeout=10, allow_redirects=False)
    assert r.status_code in (302, 403), r.status_code  # to the hub's login, never the report


def test_hub_start_handles_a_vanished_job_and_cancels_an_orphan(hub):
    """Acceptance 7, policy cancel: alice's job vanished and bob's orphan appeared while the hub was down."""
    t0 = time.monotonic()
    hub.start_server("alice", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("alice")
    alice_job = hub.job_id("alice")
    # passes every 2 s with policy cancel and no grace ran during the spawn: alice's job survived
    report = wait_for_pass(hub, time.time())
    assert report["orphans"] == [] and report["vanished_servers"] == [], report
    assert hub.server_model("alice")["ready"] and slurm_probe.in_queue(alice_job)
    print(f"\nalice ready with job {alice_job} after {time.monotonic() - t0:.1f} s")

    hub.stop()
    orphan = submit_orphan("bob")
    subprocess.run(["scancel", alice_job], check=True)
    assert wait_until(lambda: not slurm_probe.in_queue(alice_job), 30)
    started = restart_with(hub, "cancel")

    # the vanished job: the hub's own start-up poll stopped alice's server, with the reason
    # (init_spawners may finish in the background after 10 s: wait for it, do not race it)
    model = wait_until(lambda: (lambda m: m if m and not m["ready"] and not m["pending"] else None)(
        hub.server_model("alice")), 30)
    assert model, f"alice's server is still not stopped: {hub.server_model('alice')}\n{hub.log_tail(80)}"
    reason = model["state"].get("last_failure", "")
    assert f"SLURM job {alice_job}" in reason, model
    log = hub.log_tail(400)
    assert "alice appears to have stopped while the Hub was down" in log
    assert f"Server alice stopped: SLURM job {alice_job}" in log

    # the orphan: cancelled by the service, and listed with the action taken
    report = wait_for_pass(hub, started)
    print(f"report after restart: {json.dumps(report)}")
    listed = {o["job_id"]: o for o in report["orphans"]}
    assert set(listed) == {orphan}, report
    assert listed[orphan]["action"] == "cancelled" and listed[orphan]["user"] == "bob"
    assert listed[orphan]["server"] == "" and listed[orphan]["age"] >= 1
    assert report["vanished_servers"] == [], report  # the hub had already stopped alice's server
    assert wait_until(lambda: not slurm_probe.in_queue(orphan), 30), f"orphan {orphan} still queued"
    assert f"orphan SLURM job {orphan} (user bob" in hub.log_tail(400)
    print(f"acceptance 7 (cancel) took {time.monotonic() - t0:.1f} s")


def test_policy_report_only_reports(hub):
    """Acceptance 7, policy report: the orphan is listed and logged, and left alone."""
    hub.stop()
    orphan = submit_orphan("dave")
    try:
        started = restart_with(hub, "report")
        report = wait_for_pass(hub, started)
        assert report["policy"] == "report"
        listed = {o["job_id"]: o for o in report["orphans"]}
        assert set(listed) == {orphan}, report
        assert listed[orphan]["action"] == "reported" and listed[orphan]["user"] == "dave"
        assert f"orphan SLURM job {orphan} (user dave" in hub.log_tail(400)
        time.sleep(3)
        assert slurm_probe.in_queue(orphan), "policy report must not cancel"
    finally:
        subprocess.run(["scancel", orphan], check=False)
    assert wait_until(lambda: not slurm_probe.in_queue(orphan), 30)
