"""Issue 12, acceptance 2-5: SLURM hiccups never drop a server; a dead job fails its spawn at once;
stopping a pending spawn leaves no job; progress shows SLURM's pending reason.

This module's hub runs with the DEFAULT watch interval (5 s). Marked `faults`: tests/conftest.py
runs it after everything else, because it stops slurmctld.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from . import slurm_probe
from .conftest import REPO, running_hub
from .jobs import write_user_file
from .waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub(slurm_poll_interval=5, extra_env={"CARME__SlurmView__stale_warning_after": "8"}) as hub:
        yield hub


def submitted_job_id(events: list[dict]) -> str:
    """The job id from the spawn's "Submitted SLURM job N: ..." progress event."""
    for event in events:
        words = event.get("message", "").split()
        if words[:3] == ["Submitted", "SLURM", "job"]:
            return words[3].rstrip(":")
    raise AssertionError(f"no submission event in {events}")


def reachable(hub, user: str, token: str) -> bool:
    r = requests.get(f"{hub.url}/user/{user}/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    return r.status_code == 200


def test_unknown_squeue_errors_keep_the_server(hub):
    """Acceptance 2: squeue fails with an unknown error for 3 intervals -> still ready, same job, no orphan."""
    hub.start_server("alice", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("alice")
    job_id, token = hub.job_id("alice"), hub.user_token("alice")

    hub.make_squeue_fail("slurm_load_jobs error: Zero Bytes were transmitted or received")
    try:
        time.sleep(3 * hub.poll_interval + 1)
        status = hub.carme_status()["slurm"]
        assert status["slurm_answering"] is False and status["consecutive_failures"] >= 2, status
        assert "Zero Bytes" in status["last_error"]
        assert status["warning"], status  # stale for longer than slurm_stale_warning_after (8 s)
        model = hub.server_model("alice")
        assert model["ready"], model
        assert reachable(hub, "alice", token)
    finally:
        hub.make_squeue_fail(None)
    assert wait_until(lambda: hub.carme_status()["slurm"]["slurm_answering"], 2 * hub.poll_interval + 5)
    assert hub.server_model("alice")["ready"] and hub.job_id("alice") == job_id
    assert slurm_probe.in_queue(job_id)
    assert "SLURM has not answered" in hub.log_tail(400)
    hub.stop_server("alice")
    assert wait_until(lambda: not slurm_probe.in_queue(job_id), 30)


def test_slurmctld_down_for_a_minute(hub):
    """Acceptance 3: slurmctld stopped for 60 s and started again -> nothing lost, both sides agree."""
    hub.start_server("bob", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("bob")
    job_id, token = hub.job_id("bob"), hub.user_token("bob")

    subprocess.run(["scontrol", "shutdown", "slurmctld"], check=True)
    try:
        time.sleep(60)
        assert hub.carme_status()["slurm"]["slurm_answering"] is False
        assert hub.server_model("bob")["ready"]
        assert reachable(hub, "bob", token)
    finally:
        subprocess.run(["bash", str(REPO / "dev" / "cluster.sh"), "up"], check=True, capture_output=True)
    assert wait_until(lambda: hub.carme_status()["slurm"]["slurm_answering"], 2 * hub.poll_interval + 10)
    assert hub.server_model("bob")["ready"] and hub.job_id("bob") == job_id
    assert slurm_probe.in_queue(job_id) and reachable(hub, "bob", token)
    hub.stop_server("bob")
    assert wait_until(lambda: not slurm_probe.in_queue(job_id), 30)


def test_job_cancelled_while_server_starts_fails_the_spawn_at_once(hub):
    """Acceptance 4: the job dies after reporting its port but before the server answers ->
    the spawn fails within 15 s with SLURM's state and the log tail."""
    stall = write_user_file(
        "erin", ".jupyter/jupyter_server_config.py", "import time\nprint('erin stalls start-up', flush=True)\ntime.sleep(120)\n"
    )
    try:
        hub.start_server("erin", {"gpus": 0, "image": "python-cpu"})
        events = hub.progress_events("erin", until=lambda e: "reported port" in e.get("message", ""), timeout=60)
        assert "reported port" in events[-1]["message"], events
        job_id = submitted_job_id(events)
        subprocess.run(["scancel", job_id], check=True)
        cancelled = time.monotonic()
        events = hub.progress_events("erin", timeout=60)
        failed_after = time.monotonic() - cancelled
    finally:
        stall.unlink()
    final = events[-1]
    assert final.get("failed"), events
    assert failed_after <= 15, f"spawn failed {failed_after:.1f} s after the job was cancelled"
    assert "CANCELLED" in final["message"], final
    assert "Last lines of the job's output" in final["message"] and "erin stalls start-up" in final["message"], final
    assert not (hub.server_model("erin") or {}).get("ready")


def test_pending_spawn_shows_reason_and_stops_without_leftovers(hub):
    """Acceptance 5: a job held pending (GPUs all taken) shows SLURM's reason and expected start
    in the progress stream; stopping it while pending leaves no job in squeue."""
    blockers = [
        subprocess.run(
            ["sbatch", "--parsable", "-J", "blocker", "-p", "batch", "-w", node, f"--gres=gpu:{slurm_probe.node_gpus(node)}", "-t", "10",
             "-o", "/dev/null", "--wrap", "sleep 600"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        for node in ("carme-n1", "carme-n2")
    ]
    try:
        assert wait_until(lambda: all(slurm_probe.job(b).get("JobState") == "RUNNING" for b in blockers), 30)
        hub.start_server("carol", {"gpus": 1})
        resources = "waiting for GPUs/CPUs/memory to become free"
        events = hub.progress_events(
            "carol", until=lambda e: resources in e.get("message", "") and "expects" in e["message"], timeout=60
        )
        queued = [e["message"] for e in events if "is queued in partition" in e.get("message", "")]
        assert queued and resources in queued[-1], events
        assert "SLURM expects it to start at" in queued[-1], queued
        job_id = submitted_job_id(events)
        assert slurm_probe.job(job_id)["JobState"] == "PENDING"
        hub.stop_server("carol")
        assert wait_until(lambda: not slurm_probe.in_queue(job_id), 15), slurm_probe.job(job_id)
    finally:
        subprocess.run(["scancel", *blockers], check=False)
