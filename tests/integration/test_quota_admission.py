"""Issue 18, admission: a start over the user's quota is refused before sbatch, in plain words (403),
atomically per user, on the hub's cached view of SLURM; the job carries the quota's --account."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import slurm_probe
from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration

CPU = {"gpus": 0, "image": "python-cpu"}
LIMITS = {"user": {"max_servers": 1, "gpus_per_job": 1}, "power": {"max_servers": 2}}


@pytest.fixture(scope="module")
def hub(cluster):
    env = {
        "CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
        "CARME__CarmeQuota__account": "carme-dev",
        "CARME__SlurmView__accounting_interval": "5",
        # the hub's own admission is what this module tests: its quota service leaves SLURM alone
        "CARME__carme__quota": json.dumps({"url": "http://127.0.0.1:18704", "dry_run": True}),
    }
    with running_hub(extra_env=env, ports=(18700, 18781, 18701), job_prefix="carme-quota-",
                     harness_scopes=("custom:carme-slurm:read",)) as hub:
        yield hub


def make_power(hub, user: str) -> None:
    hub.ensure_user(user)
    if hub.session.get(f"{hub.api}/groups/power").status_code == 404:
        hub.session.post(f"{hub.api}/groups/power").raise_for_status()
    hub.session.post(f"{hub.api}/groups/power/users", json={"users": [user]}).raise_for_status()


def test_a_second_server_over_the_limit_is_refused_naming_the_limit(hub):
    r = hub.start_server("alice", CPU)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    assert "Account=carme-dev" in " ".join(f"{k}={v}" for k, v in slurm_probe.job(job_id).items())

    r = hub.start_server("alice", CPU, server="two")
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message == ("Over your quota: servers at once: 1 of 1 are running or queued; "
                       "stop one to start another."), message
    assert not (hub.server_model("alice", "two") or {}).get("pending")
    assert slurm_probe.carme_jobs(hub.job_prefix + "alice") == [job_id]
    assert "refused by quota" in hub.log_path.read_text()

    r = hub.start_server("alice", {"gpus": 2, "image": "pytorch-gpu"}, server="three")  # the form's maximum too
    assert r.status_code == 400 and r.json()["message"] == "gpus: 2 is above your limit of 1", r.text
    hub.stop_server("alice")


def test_twenty_concurrent_requests_give_exactly_the_users_two_servers(hub):
    make_power(hub, "bob")
    names = [f"c{i}" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda name: hub.start_server("bob", CPU, server=name), names))
    accepted = [n for n, r in zip(names, answers) if r.status_code in (201, 202)]
    refused = [r for r in answers if r.status_code == 403]
    assert len(accepted) == 2 and len(refused) == 18, [(r.status_code, r.text[:120]) for r in answers]
    assert all("servers at once: 2 of 2" in r.json()["message"] for r in refused)
    assert len(slurm_probe.carme_jobs(hub.job_prefix + "bob")) == 2
    for name in accepted:
        hub.wait_ready("bob", name)
    user = hub.session.get(f"{hub.api}/users/bob").json()
    pending = [n for n, s in (user.get("servers") or {}).items() if s.get("pending")]
    assert pending == [], pending
    for name in accepted:
        hub.stop_server("bob", name)
    assert wait_until(lambda: slurm_probe.carme_jobs(hub.job_prefix + "bob") == [], 30)


def test_the_usage_snapshot_is_served_to_services_from_the_one_view(hub):
    r = hub.session.get(f"{hub.api}/carme/slurm/usage")
    assert r.status_code == 200, r.text
    rows = {(u["account"], u["user"]): u for u in r.json()["usage"]}
    assert ("carme-dev", "alice") in rows and rows[("carme-dev", "alice")]["gpu_minutes_used"] >= 0
    assert r.json()["snapshot"]["slurm_answering"] is True
