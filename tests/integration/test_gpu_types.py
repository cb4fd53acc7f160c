"""Issue 19, acceptance 1: typed GPUs on the real SLURM. A server asking for one MIG-like slice
(`--gres=gpu:1g.10gb:1`) lands on carme-n2, the only node with slices, and sees the slice's device
index; more GPUs of a type than one node has are refused by Carme before sbatch, naming the type
and the count."""

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
                                "CARME__CarmeQuota__role_limits": "{user: {max_servers: 4, gpus_per_job: 8}}"}) as hub:
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
