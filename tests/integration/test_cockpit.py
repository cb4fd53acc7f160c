"""Issue 23, the cockpit, on the real hub, SLURM (squeue, sinfo, scontrol, sacct) and carme-cockpit: the overview
shows alice's running server (image, GPUs, node, time left) and both nodes' GPUs with the free counts
`scontrol show node` gives; as alice the page and API are 403; carol (an admin) stops alice's server from the
page and its job leaves squeue; carme-n2 drained with a reason shows so in `sinfo` and resumes (always resumed
again, the cluster is shared); the history lists jobs ended by a stop, by scancel and by their time limit with
GPU-seconds equal to sacct's, and its CSV matches its JSON; no SLURM query comes from the cockpit."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import subprocess
import time

import pytest
import requests

from . import slurm_probe
from .conftest import running_hub
from .test_catalog import login
from .test_culler import UTIL, set_util
from .waiting import wait_until

pytestmark = pytest.mark.integration

PUBLIC = 20500
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
SHORT = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 1}  # ends at its time limit
LIMITS = {"user": {"max_servers": 4, "gpus_per_job": 2, "gpu_hours": 200, "max_runtime_minutes": 60}}
NAME = "carme-cockpit"


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__cockpit": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 7}", "cache_seconds": 1,
                                                "history_cache_seconds": 1}),
           # carme-sessions remembers the jobs' choices: the history's image
           "CARME__carme__sessions": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 1}),
           # carme-culler samples the GPUs (the stand-in nvidia-smi): the cockpit's GPU charts; nothing is culled
           "CARME__carme__culler": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 9}", "interval": 1, "delay": 1,
                                               "idle_minutes": 600, "node_command": ["env", "CARME_STANDIN_NODE={node}"]}),
           "CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
           "CARME__SlurmView__node_interval": "2",
           "CARME__Authenticator__admin_users": json.dumps(["admin", "carol"])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-cockpit-",
                     harness_scopes=("custom:carme-cockpit:admin", "custom:carme-cockpit:read",
                                     f"access:services!service={NAME}", "custom:carme-slurm:read")) as hub:
        hub.cockpit = f"{hub.url}/services/{NAME}/api"
        assert wait_until(lambda: hub.session.get(f"{hub.cockpit}/overview", timeout=10).status_code == 200, 60), \
            hub.log_tail()
        yield hub


def as_user(hub, user: str) -> requests.Session:
    hub.ensure_user(user)
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.user_token(user)}"
    return s


def overview(hub) -> dict:
    r = hub.session.get(f"{hub.cockpit}/overview", timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def tres(text: str) -> dict[str, int]:
    """`gres/gpu:a100=2,...` of scontrol's CfgTRES/AllocTRES as {type: count} (GPUs only)."""
    found = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.startswith("gres/gpu:"):
            found[key.split(":", 1)[1]] = int(value)
    return found


def scontrol_free(node: str) -> dict[str, int]:
    """{type: free GPUs} of `node` as `scontrol show node` says (none free while it takes no jobs)."""
    r = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True, check=True)
    fields = dict(t.partition("=")[::2] for t in r.stdout.split() if "=" in t)
    total, used = tres(fields.get("CfgTRES", "")), tres(fields.get("AllocTRES", ""))
    state = fields.get("State", "")
    takes_jobs = not any(w in state for w in ("DRAIN", "DOWN", "FAIL", "RESERVED", "MAINT", "NOT_RESPONDING"))
    takes_jobs = takes_jobs and not state.startswith("ALLOCATED")
    return {t: (n - used.get(t, 0)) if takes_jobs else 0 for t, n in total.items()}


def sinfo_node(node: str) -> tuple[str, str]:
    """(state, reason) of `node` as `sinfo -N` prints them."""
    out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T|%E"], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[0]
    state, _, reason = out.partition("|")
    return state, reason


def sacct_figures(job_id: str) -> tuple[int, int, str]:
    """(GPUs, ElapsedRaw, State) of `job_id` as sacct gives them."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "AllocTRES,ElapsedRaw,State"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    alloc, elapsed, state = out.split("|")
    gpus = next((int(p.split("=")[1]) for p in alloc.split(",") if p.startswith("gres/gpu=")), 0)
    return gpus, int(elapsed), state.split()[0]


def xsrf_of(page: str) -> str:
    m = re.search(r'name="_xsrf" value="([^"]+)"', page)
    assert m, page[:2000]
    return m[1]


@pytest.fixture(scope="module")
def alice(hub):
    r = hub.start_server("alice", GPU)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    return hub.job_id("alice")


@pytest.fixture(scope="module")
def short(hub):
    """alice's named server 'short' with a 1-minute limit: SLURM ends it with TIMEOUT while the others run."""
    r = hub.start_server("alice", SHORT, server="short")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "short")
    return hub.job_id("alice", "short")


def test_the_overview_shows_alices_server_and_both_nodes_free_gpus(hub, alice, short):
    def shown():
        data = overview(hub)
        return next((j for j in data["jobs"] if j["job_id"] == alice), None) and data

    data = wait_until(shown, 30)
    assert data, overview(hub)
    job = next(j for j in data["jobs"] if j["job_id"] == alice)
    slurm = slurm_probe.job(alice)
    assert (job["user"], job["server"], job["image"], job["gpus"], job["gpu_type"]) == \
        ("alice", "", "pytorch-gpu", 1, "a100")
    assert job["node"] == slurm["BatchHost"] and job["project"] == slurm["Account"] and job["running"]
    assert 25 * 60 < job["time_left_s"] <= 30 * 60 and job["hub_server"] and data["may_act"]
    assert job["quota_page"] == "/services/carme-quota/admin#override-alice"
    # where admins look in JupyterHub itself (its admin panel shows the server's state and user_options)
    model = hub.server_model("alice")
    assert model["state"]["node"] == slurm["BatchHost"] and model["state"]["job_id"] == alice
    assert abs(model["state"]["ends_at"] - time.time() - job["time_left_s"]) < 60
    assert model["user_options"]["image"] == "pytorch-gpu"

    # the free counts of both nodes, per type, agree with scontrol (the shared cluster changes: until they agree)
    def agree():
        nodes = {n["name"]: {g["type"]: g["free"] for g in n["gpus"]} for n in overview(hub)["nodes"]}
        slurm = {node: scontrol_free(node) for node in ("carme-n1", "carme-n2")}
        return (nodes.get("carme-n1"), nodes.get("carme-n2")) == (slurm["carme-n1"], slurm["carme-n2"]) or \
            (nodes, slurm)
    result = wait_until(lambda: agree() is True, 60)
    assert result, agree()
    assert set(slurm_probe.NODE_GPUS["carme-n2"]) == {g["type"] for n in overview(hub)["nodes"] if n["name"] ==
                                                      "carme-n2" for g in n["gpus"]}

    # the free-GPU forecast starts at what is free now and gets alice's GPU back once her 30-min limit has passed
    def forecast_agrees():  # other tests' jobs come and go (one completing is held by one, freed by the other)
        data = overview(hub)
        free = data["forecast"]["free"]["a100"]
        now = sum(g["free"] for n in data["nodes"] if n["status"] not in ("drained", "draining", "down")
                  for g in n["gpus"] if g["type"] == "a100")
        return (free[0] == now and free[1] >= free[0] + 1) or None  # an hour on: her job reached its limit

    assert wait_until(forecast_agrees, 60), overview(hub)["forecast"]
    # the hub's spawn-to-ready histogram (its /hub/metrics, read with the cockpit's read:metrics)
    assert sum(n for _, n in overview(hub)["spawn_latency"]) >= 1  # alice's spawn at least

    page = login(hub, "carol").get(f"{hub.url}/services/{NAME}/", timeout=20)
    assert page.status_code == 200 and f'data-job="{alice}"' in page.text and 'data-node="carme-n2"' in page.text
    assert 'id="cockpit-spawn-latency"' in page.text and "Spawn to ready" in page.text
    assert 'id="cockpit-forecast"' in page.text and "Free GPUs ahead" in page.text and "<script" not in \
        page.text.split('id="cockpit-forecast"')[1].split("</div>")[0]
    # no SLURM query came from the cockpit: it reads the hub's view
    for command in ("squeue", "sinfo", "scontrol"):
        assert not [c for _, c in hub.query_calls(command) if "carme_services.cockpit" in c], command


def test_as_alice_the_page_and_the_api_are_403(hub, alice):
    token = as_user(hub, "alice")
    assert token.get(f"{hub.cockpit}/overview", timeout=10).status_code == 403
    assert token.get(f"{hub.cockpit}/history", timeout=10).status_code == 403
    assert token.post(f"{hub.cockpit}/nodes/carme-n2/drain", json={"reason": "x"}, timeout=10).status_code == 403
    page = login(hub, "alice").get(f"{hub.url}/services/{NAME}/", timeout=20)
    assert page.status_code == 403
    assert sinfo_node("carme-n2")[1] != "x"


def test_gpu_use_per_job_and_idle_gpu_hours_come_from_the_cullers_samples(hub, alice):
    node = slurm_probe.job(alice)["BatchHost"]
    util_file = UTIL / f"{node}.util"

    def gpu_use(value: int, kind: str):
        r = hub.session.get(f"{hub.cockpit}/gpu-use", params={"job": alice}, timeout=20)
        assert r.status_code == 200, r.text
        data = r.json()
        samples = data["jobs"][0]["samples"] if data["jobs"] else []
        mine = next((s for s in (data["idle"] or {}).get("servers", []) if s["job_id"] == alice), None)
        last = [x["utilization"] for x in samples[-3:]]  # (before the test wrote a file, the stand-in said 0)
        return data["culler"] and data["answered"] and last == [value] * 3 and mine and mine[kind] > 0 and data

    try:
        set_util(node, {i: 70 for i in range(8)})  # the node's driver says: alice's GPU is busy
        busy = wait_until(lambda: gpu_use(70.0, "busy_gpu_hours"), 60)
        assert busy, hub.session.get(f"{hub.cockpit}/gpu-use", params={"job": alice}, timeout=20).text
        assert busy["jobs"][0]["user"] == "alice" and busy["idle"]["threshold"] == 5
        set_util(node, {i: 0 for i in range(8)})  # ... and now idle: her idle GPU-hours grow
        idle = wait_until(lambda: gpu_use(0.0, "idle_gpu_hours"), 60)
        assert idle, hub.session.get(f"{hub.cockpit}/gpu-use", params={"job": alice}, timeout=20).text
        mine = next(s for s in idle["idle"]["servers"] if s["job_id"] == alice)
        assert mine["idle_gpu_hours"] > next(s for s in busy["idle"]["servers"] if s["job_id"] == alice)["idle_gpu_hours"]
        assert idle["idle"]["idle_gpu_hours"] > 0 and idle["idle"]["busy_gpu_hours"] > 0  # the hourly tally
        assert hub.session.get(f"{hub.cockpit}/gpu-use", params={"job": "x"}, timeout=10).status_code == 400

        carol = login(hub, "carol")
        page = carol.get(f"{hub.url}/services/{NAME}/", timeout=20)
        assert page.status_code == 200, page.text[-2000:]
        charts = page.text.split('id="cockpit-gpu-use"')[1].split('<p class="small')[0]
        assert f"{alice} alice/default" in charts and "held idle and busy" in charts and "<script" not in charts
        assert f'href="/services/{NAME}/jobs/{alice}"' in page.text
        job_page = carol.get(f"{hub.url}/services/{NAME}/jobs/{alice}", timeout=20)
        assert job_page.status_code == 200 and f"GPU utilisation of job {alice}" in job_page.text
        assert 'data-utilization="0.0"' in job_page.text and 'id="job-idle"' in job_page.text, \
            job_page.text.split('id="job-utilisation"')[1].split("</svg>")[-1][:1500]
        assert carol.get(f"{hub.url}/services/{NAME}/jobs/999999999", timeout=20).status_code == 404
        assert as_user(hub, "alice").get(f"{hub.cockpit}/gpu-use", timeout=10).status_code == 403
    finally:
        util_file.unlink(missing_ok=True)


def test_drain_carme_n2_with_a_reason_then_resume(hub):
    reason = f"cockpit test {secrets.token_hex(3)}"
    bad = hub.session.post(f"{hub.cockpit}/nodes/carme-n2/drain", json={}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "reason", bad.text
    bad = hub.session.post(f"{hub.cockpit}/nodes/carme-n9/drain", json={"reason": "x"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["message"].startswith("node: SLURM lists no node 'carme-n9'")
    bad = hub.session.post(f"{hub.cockpit}/nodes/carme-n2/drain", json={"reason": 'a "quoted" one'}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "reason"
    try:
        r = hub.session.post(f"{hub.cockpit}/nodes/carme-n2/drain", json={"reason": reason}, timeout=30)
        assert r.status_code == 200, r.text
        state, shown = sinfo_node("carme-n2")
        assert state in ("drained", "draining") and shown == reason, (state, shown)
        drained = wait_until(lambda: next((n for n in overview(hub)["nodes"] if n["name"] == "carme-n2"
                                           and n["status"] in ("drained", "draining")), None), 75)  # the node watch: 30 s
        assert drained and drained["reason"] == reason and drained["gpus_free"] == 0 and drained["may_resume"]
        r = hub.session.post(f"{hub.cockpit}/nodes/carme-n2/resume", json={}, timeout=30)
        assert r.status_code == 200, r.text
        assert sinfo_node("carme-n2")[0] not in ("drained", "draining")
    finally:  # never leave the shared cluster drained
        if sinfo_node("carme-n2")[1] == reason:
            subprocess.run(["scontrol", "update", "NodeName=carme-n2", "State=RESUME"], check=False)
    audit = hub.session.get(f"{hub.cockpit}/actions", timeout=10).json()["actions"]
    assert [(a["action"], a["target"], a["outcome"]) for a in audit[:2]] == [("resume", "carme-n2", "done"),
                                                                             ("drain", "carme-n2", "done")]
    assert audit[1]["reason"] == reason and audit[1]["actor"] == "carme-tests"
    assert audit[2]["outcome"] == "refused" and audit[2]["action"] == "drain"


def test_carol_stops_alices_server_from_the_page_and_its_job_leaves_squeue(hub, alice):
    carol = login(hub, "carol")
    page = carol.get(f"{hub.url}/services/{NAME}/", timeout=20)
    assert page.status_code == 200 and 'class="cockpit-stop"' in page.text
    r = carol.post(f"{hub.url}/services/{NAME}/", data={"_xsrf": xsrf_of(page.text), "action": "stop",
                                                         "user": "alice", "server": ""}, timeout=60)
    assert r.status_code == 200 and "Stopping alice/(default)" in r.text, r.text[-3000:]
    assert wait_until(lambda: not slurm_probe.in_queue(alice), 60), slurm_probe.job(alice)
    audit = hub.session.get(f"{hub.cockpit}/actions", timeout=10).json()["actions"]
    assert (audit[0]["actor"], audit[0]["action"], audit[0]["target"], audit[0]["outcome"]) == \
        ("carol", "stop", "alice/", "done")
    again = hub.session.post(f"{hub.cockpit}/servers/stop", json={"user": "alice"}, timeout=30)
    assert again.status_code == 409 and "not running" in again.json()["message"]


def test_the_history_lists_a_stop_an_scancel_and_a_time_limit_with_sacct_gpu_seconds(hub, alice, short):
    assert wait_until(lambda: not slurm_probe.in_queue(alice), 60)  # stopped from the page (the test before)
    r = hub.start_server("alice", GPU)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    cancelled = hub.job_id("alice")
    assert wait_until(lambda: int(sacct_figures(cancelled)[1]) >= 3, 30)  # carme-sessions sees it meanwhile
    subprocess.run(["scancel", cancelled], check=True)
    # SLURM ends the 1-minute job at its limit (checked about every 30 s, KillWait 5 s)
    assert wait_until(lambda: sacct_figures(short)[2] == "TIMEOUT", 180), sacct_figures(short)
    ended = {alice: "stop", cancelled: "scancel", short: "time limit"}

    def rows():
        r = hub.session.get(f"{hub.cockpit}/history", params={"user": "alice", "start": "2h"}, timeout=60)
        assert r.status_code == 200, r.text
        found = {row["job_id"]: row for row in r.json()["rows"] if row["job_id"] in ended}
        done = len(found) == 3 and all(row["end"] and row["state"] != "RUNNING" for row in found.values())
        return done and (r.json(), found)

    answer = wait_until(rows, 60)
    assert answer, hub.session.get(f"{hub.cockpit}/history", params={"user": "alice", "start": "2h"}).json()
    data, found = answer
    for job_id, how in ended.items():
        gpus, elapsed, state = sacct_figures(job_id)
        row = found[job_id]
        assert (row["gpus"], row["elapsed_s"], row["state"]) == (gpus, elapsed, state), (how, row)
        assert row["gpu_seconds"] == gpus * elapsed and row["gpu_hours"] == round(gpus * elapsed / 3600, 6), how
        assert row["carme"] and row["user"] == "alice" and row["partition"] and row["project"] == "carme-dev", row
        assert row["wait_s"] is not None and row["wait_s"] >= 0
    assert found[short]["state"] == "TIMEOUT" and found[short]["end_reason"] == "it reached its time limit"
    assert found[cancelled]["state"] == "CANCELLED" and found[short]["server"] == "short"
    assert found[short]["image"] == "pytorch-gpu"  # carme-sessions remembered the choice (SLURM keeps no image)

    r = hub.session.get(f"{hub.cockpit}/history", params={"user": "alice", "start": "2h", "format": "csv"},
                        timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert list(lines[0]) == data["columns"] and len(lines) == len(data["rows"])
    by_id = {line["job_id"]: line for line in lines}
    for row in data["rows"]:
        line = by_id[row["job_id"]]
        for column in data["columns"]:
            value = row[column]
            expected = "" if value is None else ("true" if value is True else "false" if value is False else value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert float(line[column]) == value, column
            else:
                assert line[column] == expected, column

    too_long = hub.session.get(f"{hub.cockpit}/history", params={"start": "40d"}, timeout=30)
    assert too_long.status_code == 400 and too_long.json()["field"] == "start"
    assert "at most 31 days" in too_long.json()["message"]
    page = login(hub, "carol").get(f"{hub.url}/services/{NAME}/history", params={"user": "alice", "start": "2h"},
                                   timeout=60)
    assert page.status_code == 200 and f'data-job="{short}"' in page.text and "<svg" in page.text


def carme(hub, *args: str) -> str:
    """The `carme` console script as a script would run it: the hub's URL and a token from the environment."""
    env = {**os.environ, "JUPYTERHUB_URL": hub.url, "JUPYTERHUB_API_TOKEN": hub.token}
    done = subprocess.run(["/opt/carme/venv/bin/carme", *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def squeue_active(prefix: str) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-a", "-o", "%i|%j|%T"], capture_output=True, text=True, check=True).stdout
    return {i: t for i, j, t in (line.split("|") for line in out.splitlines()) if j.startswith(prefix)}


def test_the_cli_agrees_with_squeue_sinfo_and_sacct(hub, alice, short):
    """Issue 23, acceptance 4: `carme status --json` as squeue/sinfo have it, `carme history --csv` as sacct."""
    r = hub.start_server("alice", GPU, server="cli")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "cli")

    def agrees():  # the hub's view is a few seconds behind SLURM: until they agree
        status = json.loads(carme(hub, "status", "--json"))
        mine = {j["job_id"]: j["state"] for j in status["jobs"]["jobs"] if j["name"].startswith(hub.job_prefix)
                and j["state"] in ("RUNNING", "PENDING")}
        return (mine == squeue_active(hub.job_prefix) and mine) and status

    status = wait_until(agrees, 60)
    assert status, (carme(hub, "status", "--json"), squeue_active(hub.job_prefix))
    assert hub.job_id("alice", "cli") in {j["job_id"] for j in status["jobs"]["jobs"]}
    sinfo = subprocess.run(["sinfo", "-N", "-h", "-O", "NodeList:30,Gres:80"], capture_output=True, text=True,
                           check=True).stdout
    totals = {}
    for line in sinfo.splitlines():
        node, gres = line.split()
        totals[node] = sum(int(n) for n in re.findall(r"gpu:[^:,(]+:(\d+)", gres))
    assert {n["name"]: sum(g["total"] for g in n["gpus"]) for n in status["nodes"]["nodes"]} == totals
    table = carme(hub, "status")
    assert "carme-n1" in table and "carme-n2" in table  # the default output: tables

    hub.stop_server("alice", "cli")
    lines = list(csv.DictReader(io.StringIO(carme(hub, "history", "--since", "2h", "--user", "alice", "--csv"))))
    ended = [line for line in lines if line["carme"] == "true" and line["end"]]
    assert len(ended) >= 3, lines  # the stop, the scancel and the time limit of the test before
    for line in ended:
        gpus, elapsed, state = sacct_figures(line["job_id"])
        assert (int(line["gpus"]), int(line["elapsed_s"]), line["state"]) == (gpus, elapsed, state), line
        assert float(line["gpu_seconds"]) == gpus * elapsed
