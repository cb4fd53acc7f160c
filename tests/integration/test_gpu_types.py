"""Issue 19, acceptance 1 and 3: typed GPUs on the real SLURM. A server asking for one MIG-like slice
(`--gres=gpu:1g.10gb:1`) lands on carme-n2, the only node with slices, and sees the slice's device
index; more GPUs of a type than one node has are refused by Carme before sbatch, naming the type
and the count. With the a100s all taken, the start estimate (sbatch --test-only as the user)
says when an a100 request would start and "starts now" for a slice; the waiting spawn shows
SLURM's reason and expected start."""

from __future__ import annotations

import subprocess

import pytest

from . import slurm_probe
from .conftest import running_hub
from .kernel import run_code
from .waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(cluster):
    # the site allows 8 GPUs per server here, so the per-type limit of the nodes is what refuses
    partitions = ('[{name: interactive, max_gpus: 2, max_runtime_minutes: 480}, '
                  '{name: batch, max_gpus: 8, max_runtime_minutes: 10080}]')
    with running_hub(ports=(19200, 19281, 19201), job_prefix="carme-gputype-",
                     extra_env={"CARME__CarmeSpawner__max_gpus": "8",
                                "CARME__CarmeSpawner__partitions": partitions,
                                "CARME__CarmeQuota__role_limits": "{user: {max_servers: 4, gpus_per_job: 8}}",
                                "CARME__CarmeSpawner__estimate_cache_seconds": "1"}) as hub:
        yield hub


async def test_a_slice_server_lands_on_the_node_with_slices_and_sees_the_slice_s_index(hub):
    r = hub.start_server("alice", {"gpus": 1, "gpu_type": "1g.10gb", "image": "pytorch-gpu"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job = slurm_probe.job(hub.job_id("alice"))
    assert job["NodeList"] == "carme-n2", job
    assert "gpu:1g.10gb:1" in job.get("TresPerNode", ""), job
    assert "#SBATCH --gres=gpu:1g.10gb:1" in slurm_probe.batch_script(job["JobId"])
    token = hub.user_token("alice")
    cuda = (await run_code(f"{hub.url}/user/alice/", token,
                           "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))")).strip()
    # carme-n2's devices: nvidia0-1 a100, nvidia2-5 the slices
    assert cuda in {"2", "3", "4", "5"}, cuda
    hub.stop_server("alice")
    assert wait_until(lambda: not slurm_probe.in_queue(job["JobId"]), 30)


def test_more_gpus_of_a_type_than_one_node_has_are_refused_before_sbatch(hub):
    def carols_jobs():
        out = subprocess.run(["squeue", "-h", "-u", "carol", "-o", "%i"], capture_output=True, text=True).stdout
        return out.split()

    before = carols_jobs()
    r = hub.start_server("carol", {"gpus": 5, "gpu_type": "a100"})
    assert r.status_code == 400, r.text
    assert ("gpus: at most 4 a100 GPUs fit on one node of partition batch, and a server runs on one node "
            "(asked for 5)") in r.json()["message"], r.text
    r = hub.start_server("carol", {"gpus": 1, "gpu_type": "h100"})
    assert r.status_code == 400 and "gpu_type: no h100 GPUs on partition interactive (there: 1g.10gb, a100)" \
        in r.json()["message"], r.text
    r = hub.start_server("carol", {"gpus": 7})
    assert r.status_code == 400 and "at most 6 GPUs fit on one node of partition batch" in r.json()["message"], r.text
    assert carols_jobs() == before  # nothing reached SLURM


def test_the_estimate_says_starts_now_or_when_and_a_waiting_spawn_says_why(hub):
    hub.ensure_user("bob")

    def estimate(**options):
        r = hub.session.get(f"{hub.api}/carme/expected-start/users/bob", params=options, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    assert estimate(gpus=1, gpu_type="a100")["message"] == "starts now"
    bad = hub.session.get(f"{hub.api}/carme/expected-start/users/bob", params={"gpus": "many"}, timeout=30)
    assert bad.status_code == 400 and "gpus: must be a whole number" in bad.json()["message"], bad.text
    blockers = [
        subprocess.run(["sbatch", "--parsable", "-J", "carme-gputype-blocker", "-p", "batch", "-w", node,
                        f"--gres=gpu:a100:{count}", "-t", "20", "-o", "/dev/null", "--wrap", "sleep 1200"],
                       check=True, capture_output=True, text=True).stdout.strip()
        for node, count in (("carme-n1", 4), ("carme-n2", 2))
    ]
    try:
        assert wait_until(lambda: all(slurm_probe.job(b).get("JobState") == "RUNNING" for b in blockers), 30)
        waiting = wait_until(lambda: (lambda e: e if not e.get("starts_now") else None)(estimate(gpus=1, gpu_type="a100")),
                             10, interval=1.5)
        assert waiting and waiting["message"].startswith("expected start ~") and "(in " in waiting["message"], waiting
        assert 15 * 60 <= waiting["wait_seconds"] <= 21 * 60, waiting  # when the 20-minute blockers end
        assert estimate(gpus=1, gpu_type="1g.10gb")["message"] == "starts now"  # the slices are free
        hub.start_server("bob", {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu"})
        # SLURM may give the job its expected start before its reason: Reason=None ("the scheduler's next
        # pass") until the pass that finds the GPUs taken says Resources
        events = hub.progress_events("bob", until=lambda e: "expects it to start at" in e.get("message", "")
                                     and "waiting for GPUs/CPUs/memory" in e.get("message", ""), timeout=60)
        queued = [e["message"] for e in events if "is queued in partition" in e.get("message", "")]
        assert queued and "waiting for GPUs/CPUs/memory to become free" in queued[-1], events
        assert "SLURM expects it to start at" in queued[-1], queued
        hub.stop_server("bob")
    finally:
        subprocess.run(["scancel", *blockers], check=False)
