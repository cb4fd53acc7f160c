"""Issue 21, the session part, on the real hub, SLURM (squeue, sacct, scontrol) and the carme-sessions
service: a running server's card (image, GPUs, node, time remaining); Extend +5 changes the job's
TimeLimit in `scontrol show job`; an Extend beyond the user's max runtime is refused naming the
limit; after Stop the card says completed and Relaunch starts a job with the same image, GPUs and
runtime; the history lists a job cancelled outside the hub with GPU-hours that agree with sacct."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from . import slurm_probe
from .conftest import running_hub
from .test_catalog import login
from .waiting import wait_until

pytestmark = pytest.mark.integration

PUBLIC = 20000
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
LIMITS = {"user": {"max_servers": 4, "gpus_per_job": 2, "gpu_hours": 200, "max_runtime_minutes": 60},
          "power": {"max_servers": 8, "gpus_per_job": 4, "gpu_hours": 1000}}


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__sessions": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 1,
                                                 "poll_seconds": 2, "ending_soon_minutes": 5}),
           "CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
           "CARME__SlurmView__accounting_interval": "5",  # sacct read often: the history sees an end soon
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-sess-",
                     harness_scopes=("custom:carme-sessions:admin", "custom:carme-sessions:read",
                                     "access:services!service=carme-sessions")) as hub:
        hub.sessions = f"{hub.url}/services/carme-sessions/api"
        assert wait_until(lambda: hub.session.get(f"{hub.sessions}/extensions", timeout=10).status_code == 200, 60), \
            hub.log_tail()
        yield hub


def as_user(hub, user: str) -> requests.Session:
    hub.ensure_user(user)
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.user_token(user)}"
    return s


def cards(session: requests.Session, hub, user: str | None = None) -> dict[str, dict]:
    r = session.get(f"{hub.sessions}/sessions", params={"user": user} if user else {}, timeout=20)
    assert r.status_code == 200, r.text
    return {c["server"]: c for c in r.json()["sessions"]}


def run_seconds(text: str) -> int:
    """scontrol's RunTime ([D-]HH:MM:SS) in seconds."""
    days, _, clock = text.rpartition("-")
    h, m, sec = (int(x) for x in clock.split(":")) if clock.count(":") == 2 else (0, 0, 0)
    return int(days or 0) * 86400 + h * 3600 + m * 60 + sec


def running_job(hub, user: str) -> str:
    model = hub.wait_ready(user)
    return str(model["state"]["job_id"])


@pytest.fixture(scope="module")
def alice(hub) -> requests.Session:
    r = hub.start_server("alice", GPU)
    assert r.status_code in (201, 202), r.text
    running_job(hub, "alice")
    return as_user(hub, "alice")


def test_a_running_servers_card_shows_image_gpus_node_and_the_time_remaining(hub, alice):
    job_id = running_job(hub, "alice")
    card = wait_until(lambda: cards(alice, hub)[""]["status"] == "running" and cards(alice, hub)[""], 30)
    slurm = slurm_probe.job(job_id)
    assert (card["job_id"], card["image"], card["gpus"], card["gpu_type"]) == (job_id, "pytorch-gpu", 1, "a100")
    assert card["node"] == slurm["BatchHost"] and card["project"] == slurm["Account"]
    assert 25 * 60 < card["running"]["time_left_s"] <= 30 * 60 and card["actions"]["extend"]
    assert card["created"] and card["links"]["open"] == "/user/alice/"
    r = as_user(hub, "bob").get(f"{hub.sessions}/sessions", params={"user": "alice"}, timeout=10)
    assert r.status_code == 403  # users read their own sessions only
    assert cards(hub.session, hub, "alice")[""]["job_id"] == job_id  # admins anyone's
    page = login(hub, "alice").get(f"{hub.url}/services/carme-sessions/", timeout=20)
    assert page.status_code == 200 and f'"job_id": "{job_id}"' in page.text and "data-end" in page.text


def test_extend_changes_the_time_limit_in_slurm_and_beyond_the_max_runtime_is_refused(hub, alice):
    job_id = running_job(hub, "alice")
    assert slurm_probe.job(job_id)["TimeLimit"] == "00:30:00"
    r = alice.post(f"{hub.sessions}/sessions//extend", json={"minutes": 5}, timeout=30)
    assert r.status_code == 200, r.text
    assert (r.json()["from_minutes"], r.json()["to_minutes"]) == (30, 35)
    assert slurm_probe.job(job_id)["TimeLimit"] == "00:35:00"

    r = alice.post(f"{hub.sessions}/sessions//extend", json={"minutes": 30}, timeout=30)
    assert r.status_code == 403, r.text
    refusal = r.json()
    assert refusal["limit"] == "max_runtime_minutes" and "runtime per server: up to 1 h" in refusal["message"]
    assert slurm_probe.job(job_id)["TimeLimit"] == "00:35:00"  # SLURM was not asked

    r = alice.post(f"{hub.sessions}/sessions//extend", json={"minutes": "soon"}, timeout=30)
    assert r.status_code == 400 and r.json()["message"].startswith("minutes:")
    audit = alice.get(f"{hub.sessions}/extensions", timeout=10).json()["extensions"]
    assert [(e["outcome"], e["minutes"]) for e in audit[:2]] == [("refused", 30), ("extended", 5)]
    card = wait_until(lambda: (c := cards(alice, hub)[""])["time_limit_minutes"] == 35 and c, 30)
    assert card and [e["outcome"] for e in card["extensions"]] == ["refused", "extended"]
    assert 30 * 60 < card["running"]["time_left_s"] <= 35 * 60


def test_after_stop_the_card_says_completed_and_relaunch_starts_the_same_choices(hub, alice):
    old = running_job(hub, "alice")
    old_script = slurm_probe.batch_script(old)
    r = alice.post(f"{hub.sessions}/sessions//stop", json={}, timeout=60)
    assert r.status_code == 202, r.text
    card = wait_until(lambda: (c := cards(alice, hub)[""])["status"] == "completed" and c, 60)
    assert card, cards(alice, hub)
    assert card["job_id"] == old and card["actions"]["relaunch"] and card["ended"]["reason"].startswith("stopped from the hub")

    r = alice.post(f"{hub.sessions}/sessions//relaunch", json={}, timeout=60)
    assert r.status_code == 202, r.text
    assert r.json()["options"] == GPU
    new = running_job(hub, "alice")
    assert new != old
    job = slurm_probe.job(new)
    assert job["TimeLimit"] == "00:30:00" and "gpu:a100:1" in job.get("TresPerNode", ""), job
    script = slurm_probe.batch_script(new)
    assert "pytorch-gpu.sif" in script and "pytorch-gpu.sif" in old_script
    r = alice.post(f"{hub.sessions}/sessions//relaunch", json={}, timeout=30)
    assert r.status_code == 409  # it runs: stop it first


def test_the_history_lists_a_job_cancelled_outside_the_hub_with_sacct_gpu_hours(hub, alice):
    job_id = running_job(hub, "alice")
    assert wait_until(lambda: run_seconds(slurm_probe.job(job_id).get("RunTime", "")) >= 3, 30)
    subprocess.run(["scancel", job_id], check=True)
    assert wait_until(lambda: not (hub.server_model("alice") or {}).get("ready"), 60)

    def row():
        rows = {r["job_id"]: r for r in alice.get(f"{hub.sessions}/history", timeout=20).json()["history"]}
        found = rows.get(job_id)
        return found if found and found["state"] == "CANCELLED" and found["end"] else None

    found = wait_until(row, 60)
    assert found, alice.get(f"{hub.sessions}/history", timeout=20).json()
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "AllocTRES,ElapsedRaw"], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[0]
    tres, elapsed = out.split("|")
    gpus = int(next(p.split("=")[1] for p in tres.split(",") if p.startswith("gres/gpu=")))
    assert found["gpus"] == gpus == 1 and found["elapsed_s"] == int(elapsed)
    assert found["gpu_hours"] == round(gpus * int(elapsed) / 3600, 4)
    assert found["image"] == "pytorch-gpu" and found["relaunch"] and found["server"] == ""
    card = wait_until(lambda: (c := cards(alice, hub)[""])["status"] == "cancelled" and c, 30)
    assert card and "outside the hub" in card["ended"]["reason"]
    r = alice.post(f"{hub.sessions}/sessions//relaunch", json={"job_id": job_id}, timeout=60)
    assert r.status_code == 202 and r.json()["options"] == GPU, r.text  # Relaunch works from the history
    running_job(hub, "alice")
    hub.stop_server("alice")
