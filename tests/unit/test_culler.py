"""The culler's decisions (issue 21): nvidia-smi's query rows, GPU indexes from SLURM's allocation,
idle = GPUs below the threshold AND no activity for the idle time, warn first, stop later, Keep
running, exemptions, doubt (no samples) is never idle; the STAND-IN nvidia-smi's query mode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from carme_services.culler.idle import (
    NVIDIA_SMI_QUERY,
    CullerPolicy,
    GpuSample,
    Server,
    Watch,
    apply_verdict,
    exemption,
    job_samples,
    judge,
    keep_running_refusal,
    parse_gpu_query,
)
from carme_services.culler.service import CullerService, hub_service
from carme_services.wiring import ServiceSettings
from carme_slurm.gres import gpu_indexes
from carme_slurm.jobs import SlurmJob, parse_squeue_json

REPO = Path(__file__).resolve().parents[2]
POLICY = CullerPolicy(idle_seconds=600, warn_seconds=120, gpu_threshold=5, exempt_roles=("admin",),
                      exempt_projects=("vision",), keep_running_max=2, keep_running_period=300)
T0 = 1_000_000.0


def gpu_server(**kw) -> Server:
    return Server(**{"user": "alice", "name": "", "job_id": "7", "started": T0, "last_activity": T0, "gpus": 1,
                     "node": "carme-n1", "gpu_indexes": (0,), **kw})


def test_nvidia_smis_query_rows_are_read_exactly():
    assert NVIDIA_SMI_QUERY == ["nvidia-smi", "--query-gpu=index,uuid,utilization.gpu,memory.used",
                                "--format=csv,noheader,nounits"]
    rows = parse_gpu_query("0, GPU-aaa, 80, 1000\n1, GPU-bbb, [N/A], [Not Supported]\n\n")
    assert rows == {0: GpuSample(0, "GPU-aaa", 80.0, 1000.0), 1: GpuSample(1, "GPU-bbb", None, None)}
    with pytest.raises(ValueError, match="not a GPU query row"):
        parse_gpu_query("index, uuid, utilization.gpu [%], memory.used [MiB]\n")


def test_a_jobs_gpus_on_its_node_come_from_slurms_allocation():
    assert gpu_indexes("gpu:a100:2(IDX:0,2),gpu:1g.10gb:1(IDX:4)") == (0, 2, 4)
    assert gpu_indexes("gpu:0(IDX:N/A),mps:100(IDX:0)") == ()
    with pytest.raises(ValueError):
        gpu_indexes("gpu:1(IDX:a)")
    jobs = {j.job_id: j for j in parse_squeue_json((REPO / "tests/fixtures/squeue-running-pending.json").read_text())}
    assert any(j.gres_detail == ("gpu:4(IDX:0-3)",) for j in jobs.values())
    job = next(j for j in jobs.values() if j.gres_detail)
    assert SlurmJob.from_dict(job.to_dict()) == job  # through the view's JSON
    samples = {0: GpuSample(0, "a", 3, 10), 1: GpuSample(1, "b", 90, 20)}
    assert job_samples(samples, (0, 1)) == (90, 30)  # busy if any of its GPUs is
    assert job_samples(samples, (0, 5)) is None  # a GPU the node did not report: nothing judged
    assert job_samples({0: GpuSample(0, "a", None, None)}, (0,)) is None


def test_idle_needs_both_quiet_gpus_and_no_activity_then_a_warning_then_the_stop():
    server, watch = gpu_server(), Watch()
    assert judge(server, watch, POLICY, T0 + 700).state == "unknown"  # no samples: never idle
    for t in range(0, 700, 60):
        watch.add_sample(T0 + t, 1.0, 100)
    assert judge(server, watch, POLICY, T0 + 599).state == "busy"  # quiet for 599 s of the 600
    verdict = judge(server, watch, POLICY, T0 + 620)
    assert verdict.state == "idle-warned" and verdict.stop_at == T0 + 740
    assert "GPUs stayed below 5 %" in verdict.reason
    assert apply_verdict(watch, verdict) is True  # a new warning
    assert apply_verdict(watch, judge(server, watch, POLICY, T0 + 680)) is False  # the same one
    assert judge(server, watch, POLICY, T0 + 739).state == "idle-warned"
    assert judge(server, watch, POLICY, T0 + 740).state == "stop"
    watch.add_sample(T0 + 700, 50.0, 100)  # the GPU got busy: the clock starts again, the warning goes
    verdict = judge(server, watch, POLICY, T0 + 741)
    assert verdict.state == "busy" and verdict.idle_since == T0 + 700
    apply_verdict(watch, verdict)
    assert watch.stop_at is None


def test_activity_keeps_a_quiet_gpu_server_and_cpu_servers_go_by_activity_alone():
    watch = Watch()
    for t in range(0, 1300, 60):
        watch.add_sample(T0 + t, 0.0, 0)
    assert judge(gpu_server(last_activity=T0 + 1000), watch, POLICY, T0 + 1300).state == "busy"
    cpu = gpu_server(gpus=0, gpu_indexes=(), last_activity=T0 + 100)
    assert judge(cpu, Watch(), POLICY, T0 + 699).state == "busy"
    assert judge(cpu, Watch(), POLICY, T0 + 700).state == "idle-warned"


def test_samples_begun_late_start_the_clock_late():
    watch = Watch()
    watch.add_sample(T0 + 5000, 0.0, 0)  # the culler (re)started long after the server
    assert judge(gpu_server(), watch, POLICY, T0 + 5500).state == "busy"
    assert judge(gpu_server(), watch, POLICY, T0 + 5600).state == "idle-warned"


def test_exempt_roles_users_groups_and_projects_are_never_culled():
    watch = Watch()
    watch.add_sample(T0, 0.0, 0)
    for server, words in ((gpu_server(role="admin"), "role admin"), (gpu_server(account="vision"), "project vision")):
        verdict = judge(server, watch, POLICY, T0 + 10**6)
        assert verdict.state == "exempt" and words in verdict.reason
    policy = CullerPolicy(exempt_users=("bob",), exempt_groups=("long-runs",))
    assert exemption(gpu_server(user="bob"), policy) == "user bob is exempt"
    assert exemption(gpu_server(groups=("x", "long-runs")), policy) == "group long-runs is exempt"
    assert exemption(gpu_server(), policy) == ""


def test_keep_running_restarts_the_clock_a_bounded_number_of_times():
    watch = Watch()
    assert keep_running_refusal(watch, POLICY, T0) == ""
    watch.kept.append(T0)
    assert "once per 5 min" in keep_running_refusal(watch, POLICY, T0 + 10)
    watch.add_sample(T0 - 100, 0.0, 0)
    assert judge(gpu_server(started=T0 - 1000, last_activity=T0 - 1000), watch, POLICY, T0 + 599).state == "busy"
    watch.kept.append(T0 + 400)
    assert "pressed 2 times already" in keep_running_refusal(watch, POLICY, T0 + 10_000)


def test_the_service_refuses_bad_settings_and_declares_its_wiring():
    with pytest.raises(Exception, match="node_command must name the node"):
        CullerService(node_command=["ssh", "n1"])
    with pytest.raises(Exception, match="gpu_threshold"):
        CullerService(gpu_threshold=0)
    wiring = hub_service(ServiceSettings("culler", {"idle_minutes": 30}, admin_users=("admin",)))
    own = next(r for r in wiring["roles"] if r["name"] == "carme-culler")
    assert {"delete:servers", "admin:server_state", "read:users:activity"} <= set(own["scopes"])
    assert "custom:carme-culler:read!user" in wiring["user_scopes"]
    with pytest.raises(ValueError, match="carme.culler"):
        hub_service(ServiceSettings("culler", {"warn_minutes": -1}))


def test_the_standin_nvidia_smi_answers_the_query_from_roots_file(tmp_path):
    (tmp_path / "dev" / "n1").mkdir(parents=True)
    for i in (0, 1, 2):
        (tmp_path / "dev" / "n1" / f"nvidia{i}").touch()
    (tmp_path / "util").mkdir()
    (tmp_path / "util" / "n1.util").write_text("1 80 2048\n")
    env = {**os.environ, "CARME_STANDIN_NODE": "n1", "CARME_STANDIN_DEV_DIR": str(tmp_path / "dev"),
           "CARME_STANDIN_NVIDIA_DIR": str(tmp_path / "util")}
    out = subprocess.run(["bash", str(REPO / "dev/standins/nvidia-smi"), *NVIDIA_SMI_QUERY[1:]], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert parse_gpu_query(out) == {0: GpuSample(0, "GPU-standin-n1-0", 0, 0),
                                    1: GpuSample(1, "GPU-standin-n1-1", 80, 2048),
                                    2: GpuSample(2, "GPU-standin-n1-2", 0, 0)}
    bad = subprocess.run(["bash", str(REPO / "dev/standins/nvidia-smi"), "--query-gpu=index", "--format=json"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--format=csv" in bad.stderr

