"""Issue 20 acceptance 1, 2 and 4: jobs' scratch made and removed by the real SLURM Prolog/Epilog.

The dev cluster runs Carme's carme-prolog/carme-epilog (rendered by `carme scratch-scripts` from
carme.example.yaml's carme.scratch, PrologFlags=Alloc). The hub here enables the carme-scratch
service with the same settings, so the batch script binds the job's directory at /scratch. BeeOND
is the STAND-IN of dev/standins (its calls are recorded in its directory); multi-node jobs are
real `-N 2` allocations over the two slurmds.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from carme_services.scratch.service import layout_settings
from carme_slurm.scratch import layout_from_settings
from carme_spawner.batch_script import JobSite, render_batch_script
from carme_spawner.options import parse_options

from ..unit.samples import LIMITS
from . import slurm_probe
from .conftest import running_hub
from .kernel import run_code
from .waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRATCH = yaml.safe_load((REPO / "carme.example.yaml").read_text())["carme"]["scratch"]
STANDIN = Path("/var/lib/carme-dev/standins/beeond")  # the STAND-IN beeond's default directory
PORTS = (19600, 19681, 19601)


def node_dir(node: str) -> Path:
    return Path(SCRATCH["node_dir"].replace("{node}", node))


@pytest.fixture(scope="module")
def hub(cluster):
    service = {**SCRATCH, "url": f"http://127.0.0.1:{PORTS[0] + 6}", "sweep_interval": 2, "delay": 1, "grace": 5}
    with running_hub(ports=PORTS, job_prefix="carme-scr-",
                     extra_env={"CARME__carme__scratch": json.dumps(service)},
                     harness_scopes=("custom:carme-scratch:admin", "custom:carme-scratch:read",
                                     "access:services!service=carme-scratch", "custom:carme-slurm:read")) as hub:
        hub.scratch = f"{hub.url}/services/carme-scratch/api"
        assert wait_until(lambda: hub.session.get(f"{hub.scratch}/sweep").ok, 60), hub.log_tail()
        yield hub


def job_node(job_id: str) -> str:
    return slurm_probe.job(job_id)["BatchHost"]


def sbatch(user: str, *args: str) -> str:
    done = subprocess.run(["runuser", "-u", user, "--", "sbatch", "--parsable", "--chdir=/tmp",
                           "--output=/dev/null", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip().split(";")[0]


def wait_running(job_id: str, timeout: float = 60) -> None:
    """Until the job runs and its prolog is done (SLURM shows RUNNING while the prolog still works)."""
    assert wait_until(lambda: slurm_probe.job(job_id).get("JobState") == "RUNNING", timeout), slurm_probe.job(job_id)
    done = f"job {job_id} user "
    assert wait_until(lambda: sum(done in line and " prolog " in line and ("made" in line or "FAILED" in line)
                                  for line in Path(SCRATCH["log_file"]).read_text().splitlines()) >= 1, 30)


async def test_a_server_writes_its_scratch_which_is_gone_after_stop(hub):
    """1: the scratch is bound at /scratch, owned by the user, written from inside; a stop removes it."""
    alice = pwd.getpwnam("alice")
    assert hub.start_server("alice", {"gpus": 0, "image": "python-cpu"}).status_code in (201, 202)
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    scratch = node_dir(job_node(job_id)) / f"job-{job_id}"
    st = scratch.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (alice.pw_uid, 0o700)
    assert '--bind "$CARME_SCRATCH_SOURCE":/scratch --env CARME_SCRATCH=/scratch' in slurm_probe.batch_script(job_id)

    code = ("import os; p = os.environ['CARME_SCRATCH']; open(p + '/checkpoint.pt', 'w').write('weights'); "
            "print(p, os.stat(p).st_uid)")
    out = await run_code(f"{hub.url}/user/alice/", hub.user_token("alice"), code)
    assert out.split() == ["/scratch", str(alice.pw_uid)]
    assert (scratch / "checkpoint.pt").read_text() == "weights"  # the node's directory, not the container's

    instances = hub.session.get(f"{hub.scratch}/instances").json()["instances"]
    mine = [i for i in instances if i["job_id"] == job_id]
    assert mine and mine[0]["user"] == "alice" and mine[0]["bytes"] > 0 and mine[0]["job_state"] == "RUNNING"

    hub.stop_server("alice")
    assert wait_until(lambda: not scratch.exists(), 30), f"{scratch} is still there after the stop"


def test_scratch_is_gone_after_an_external_scancel_and_after_the_time_limit(hub):
    """1: scancel from outside and a 1-minute job hitting its limit both run the epilog."""
    limited = sbatch("bob", "--time=1", "--wrap=sleep 600")
    cancelled = sbatch("bob", "--time=10", "--wrap=sleep 600")
    for job_id in (limited, cancelled):
        wait_running(job_id)
    dirs = {j: node_dir(job_node(j)) / f"job-{j}" for j in (limited, cancelled)}
    assert all(d.is_dir() for d in dirs.values()), dirs

    subprocess.run(["scancel", cancelled], check=True)
    assert wait_until(lambda: not dirs[cancelled].exists(), 30), "scratch left after scancel"
    assert dirs[limited].is_dir()
    # SLURM ends it at its limit (checked about every 30 s) and kills it KillWait (5 s) later
    assert wait_until(lambda: not dirs[limited].exists(), 150), slurm_probe.job(limited)
    assert slurm_probe.job(limited).get("JobState") in ("TIMEOUT", "", None), slurm_probe.job(limited)


def standin_calls() -> list[str]:
    path = STANDIN / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_two_node_job_gets_beeond_over_both_nodes(hub):
    """2: a real -N 2 allocation: beeond start with a node file of both nodes and the configured paths,
    the job sees the mount, and beeond stop -L -d at its end."""
    before = len(standin_calls())
    job_id = sbatch("carol", "-p", "batch", "-N", "2", "--ntasks-per-node=1", "--time=5",
                    f"--wrap=test -d {SCRATCH['beeond_mount_dir']}/job-$SLURM_JOB_ID && sleep 600")
    wait_running(job_id)
    nodefile = Path(SCRATCH["state_dir"]) / f"job-{job_id}.nodes"
    assert wait_until(nodefile.exists, 30)
    assert nodefile.read_text().split() == ["carme-n1", "carme-n2"]
    starts = [c for c in standin_calls()[before:] if " start " in c]
    assert len(starts) == 1, standin_calls()[before:]
    info = Path(SCRATCH["state_dir"]) / f"job-{job_id}.info"
    assert (f"start -n {nodefile} -i {info} -d {SCRATCH['beeond_data_dir']}/job-{job_id} "
            f"-c {SCRATCH['beeond_mount_dir']}/job-{job_id}") in starts[0]
    mount = Path(SCRATCH["beeond_mount_dir"]) / f"job-{job_id}"
    assert mount.stat().st_uid == pwd.getpwnam("carol").pw_uid

    subprocess.run(["scancel", job_id], check=True)
    assert wait_until(lambda: any(" stop " in c for c in standin_calls()[before:]), 30), standin_calls()[before:]
    stop = next(c for c in standin_calls()[before:] if " stop " in c)
    assert f"stop -n {nodefile} -i {info} -L -d" in stop
    assert wait_until(lambda: not mount.exists() and not nodefile.exists(), 30)


def test_a_failing_beeond_start_fails_the_job_with_the_reason_and_leaves_nothing(hub, tmp_path):
    """2: with a failing beeond start the job fails showing why; no scratch directory remains."""
    fail = STANDIN / "fail-start"
    fail.parent.mkdir(parents=True, exist_ok=True)
    fail.write_text("storage target 2 on carme-n2 is offline")
    out = Path("/tmp") / f"carme-scratch-fail-{os.getpid()}.out"
    # Carme's own batch script (its scratch checks as the spawner renders them), on two nodes; its
    # "server" is an echo that must never run
    site = JobSite(job_name="carme-scr-fail", comment="", workdir="/tmp", output_path=str(out),
                   container_runtime="apptainer", binds=(), export_env=("PATH",), launcher=("/bin/echo",),
                   singleuser_cmd=("the server started",), scratch=layout_from_settings(layout_settings(SCRATCH)))
    script = render_batch_script(parse_options({"gpus": 0}, LIMITS), site)
    try:
        done = subprocess.run(["runuser", "-u", "dave", "--", "sbatch", "--parsable", "-p", "batch", "-N", "2",
                               "--ntasks=2", "--time=5"], input=script, capture_output=True, text=True, check=True)
        job_id = done.stdout.strip().split(";")[0]
        assert wait_until(lambda: not slurm_probe.in_queue(job_id) or
                          slurm_probe.job(job_id).get("JobState") in ("FAILED", "COMPLETED"), 60)
    finally:
        fail.unlink()
    assert slurm_probe.job(job_id).get("JobState") == "FAILED", slurm_probe.job(job_id)
    assert "carme: the job's scratch could not be made: beeond start failed on carme-n1" in out.read_text()
    assert "the server started" not in out.read_text()
    assert "storage target 2 on carme-n2 is offline" in out.read_text()
    assert "beeond start failed on carme-n1" in out.read_text()
    assert not (Path(SCRATCH["beeond_mount_dir"]) / f"job-{job_id}").exists()
    assert not (Path(SCRATCH["beeond_data_dir"]) / f"job-{job_id}").exists()
    assert not (Path(SCRATCH["state_dir"]) / f"job-{job_id}.nodes").exists()
    assert wait_until(lambda: not (node_dir("carme-n1") / f"job-{job_id}.failed").exists(), 30)  # the epilog's
    out.unlink()


def test_the_sweeper_removes_a_dead_jobs_scratch_and_leaves_a_live_one(hub):
    """4: a directory of a job id SLURM does not know goes; a running job's stays."""
    live = sbatch("erin", "--time=5", "--wrap=sleep 600")
    wait_running(live)
    live_dir = node_dir(job_node(live)) / f"job-{live}"
    assert wait_until(lambda: live in [str(j["job_id"]) for j in
                                       hub.session.get(f"{hub.api}/carme/slurm/jobs").json()["jobs"]], 30)
    old = time.time() - 3600
    os.utime(live_dir, (old, old))  # its mtime as a leftover's: the sweeper judges the ctime (a user cannot set it)
    dead = node_dir("carme-n2") / "job-987654"
    dead.mkdir(parents=True)
    (dead / "data.bin").write_bytes(b"x" * 4096)
    os.utime(dead, (old, old))
    assert wait_until(lambda: not dead.exists(), 30), hub.session.get(f"{hub.scratch}/sweep").json()
    swept = hub.session.get(f"{hub.scratch}/sweep").json()["last_sweep"]
    assert wait_until(lambda: hub.session.get(f"{hub.scratch}/sweep").json()["last_sweep"] > swept + 2, 30)
    assert live_dir.is_dir()  # its ctime is past the grace by now: the job's being alive kept it
    assert f"swept {dead} (job 987654 gone from SLURM)" in Path(SCRATCH["log_file"]).read_text()
    subprocess.run(["scancel", live], check=True)
    assert wait_until(lambda: not live_dir.exists(), 30)


def test_users_see_their_own_scratch_and_only_admins_clean_up(hub):
    """The service: a user lists only their jobs' scratch; a cleanup is an admin's, refused for a live job."""
    job_id = sbatch("erin", "--time=5", "--wrap=sleep 600")
    wait_running(job_id)
    hub.ensure_user("erin")
    hub.ensure_user("bob")
    erin = {"Authorization": f"token {hub.user_token('erin')}"}
    bob = {"Authorization": f"token {hub.user_token('bob')}"}
    r = requests.get(f"{hub.scratch}/instances", headers=erin, timeout=10)
    assert r.ok, r.text
    mine = r.json()["instances"]
    assert [i["job_id"] for i in mine if i["job_id"] == job_id] == [job_id]
    theirs = requests.get(f"{hub.scratch}/instances", headers=bob, timeout=10).json()["instances"]
    assert job_id not in [i["job_id"] for i in theirs]
    r = requests.post(f"{hub.scratch}/instances/{job_id}/cleanup", headers=erin, timeout=10)
    assert r.status_code == 403
    assert wait_until(lambda: job_id in [str(j["job_id"]) for j in
                                         hub.session.get(f"{hub.api}/carme/slurm/jobs").json()["jobs"]], 30)
    r = hub.session.post(f"{hub.scratch}/instances/{job_id}/cleanup")
    assert r.status_code == 409 and "scancel the job first" in r.json()["message"]
    scratch = node_dir(job_node(job_id)) / f"job-{job_id}"
    assert scratch.is_dir()
    subprocess.run(["scancel", job_id], check=True)
    assert wait_until(lambda: not scratch.exists(), 30)
    # a scratch left by a job SLURM forgot: the admin's cleanup removes it, and says so in the log
    gone = node_dir("carme-n1") / "job-987655"
    gone.mkdir()
    old = time.time() - 3600
    os.utime(gone, (old, old))
    # newer than the view's last snapshot it is a 409 (it may be a new job's): asked again once the view is newer
    answers = []
    assert wait_until(lambda: answers.append(hub.session.post(f"{hub.scratch}/instances/987655/cleanup")) or
                      answers[-1].status_code != 409, 30), answers[-1].text
    r = answers[-1]
    assert r.status_code == 200 and r.json()["results"] == [{"path": str(gone), "kind": "dir", "error": None}], r.text
    assert not gone.exists()
    assert "cleanup by " in Path(SCRATCH["log_file"]).read_text()
    assert hub.session.post(f"{hub.scratch}/instances/987655/cleanup").status_code == 404
