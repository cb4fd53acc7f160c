"""Issue 21, acceptance 4-6, on the real hub, SLURM and the carme-culler service, with the STAND-IN
nvidia-smi (root's per-node utilisation files) and short timings: an idle GPU server is warned, then
stopped and its job leaves squeue; one at 80 % is not culled although JupyterLab is idle; an exempt
role is never culled; Keep running restarts the clock once per period; the user cannot make their
job look busy from inside it; a dry run lists the candidates and stops nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from .conftest import running_hub
from .hub import QUOTA_ADMIN
from .kernel import run_code
from .test_catalog import login
from .waiting import wait_until

pytestmark = pytest.mark.integration

UTIL = Path("/var/lib/carme-dev/standins/nvidia-smi")  # the stand-in's default: root's, 0755
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
IDLE_S, WARN_S = 12, 12
CULLER = {"interval": 1, "delay": 1, "idle_minutes": IDLE_S / 60, "warn_minutes": WARN_S / 60, "gpu_threshold": 5,
          "exempt_roles": ["power"], "keep_running_max": 1, "keep_running_minutes": 60,
          "node_command": ["env", "CARME_STANDIN_NODE={node}"]}


def set_util(node: str, rows: dict[int, int]) -> None:
    UTIL.mkdir(parents=True, exist_ok=True)
    tmp = UTIL / f".{node}.util"
    tmp.write_text("".join(f"{i} {u} {100 if u else 0}\n" for i, u in rows.items()))
    tmp.replace(UTIL / f"{node}.util")


def culler_hub(cluster, public: int, **settings):
    env = {"CARME__carme__culler": json.dumps({**CULLER, "url": f"http://127.0.0.1:{public + 7}", **settings}),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    return running_hub(extra_env=env, ports=(public, public + 81, public + 1), job_prefix=f"carme-cull{public % 100}-",
                       harness_scopes=("custom:carme-culler:admin", "custom:carme-culler:read",
                                       "access:services!service=carme-culler", *QUOTA_ADMIN))


@pytest.fixture(scope="module")
def hub(cluster):
    shutil.rmtree(UTIL, ignore_errors=True)
    with culler_hub(cluster, 19800) as hub:
        hub.culler = f"{hub.url}/services/carme-culler/api"
        yield hub
    shutil.rmtree(UTIL, ignore_errors=True)


def verdicts(hub, session: requests.Session | None = None) -> dict[str, dict]:
    r = (session or hub.session).get(f"{hub.culler}/servers", timeout=10)
    assert r.status_code == 200, r.text
    return {s["user"]: s for s in r.json()["servers"]}


def as_user(hub, user: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.user_token(user)}"
    return s


def in_squeue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True).stdout
    return job_id in out.split()


def start_gpu_servers(hub, users: list[str]) -> dict[str, dict]:
    for user in users:
        hub.ensure_user(user)
    hub.sync_quota()  # e.g. a MaxWall of 10 min another module's hub left for bob would refuse his 30-min server
    for user in users:
        r = hub.start_server(user, GPU)
        assert r.status_code in (201, 202), r.text
    for user in users:
        hub.wait_ready(user)
    assert wait_until(lambda: set(users) <= set(verdicts(hub)), 30), verdicts(hub)
    return verdicts(hub)


FAKING = r"""
import os, pathlib, subprocess
tried = []
for target in ("/var/lib/carme-dev/standins/nvidia-smi/NODE.util", "/var/lib/carme-dev/standins/nvidia-smi/x.util"):
    try:
        pathlib.Path(target).write_text("IDX 99 99\n")
        tried.append("wrote " + target)
    except OSError as e:
        tried.append(f"refused {target}: {e.errno}")
home = pathlib.Path.home()
(home / "bin").mkdir(exist_ok=True)
fake = home / "bin" / "nvidia-smi"
fake.write_text("#!/bin/sh\necho 'IDX, GPU-fake, 100, 80000'\n")
fake.chmod(0o755)
os.environ["CARME_STANDIN_NODE"] = "elsewhere"
os.environ["PATH"] = f"{home / 'bin'}:{os.environ['PATH']}"
(home / ".carme-busy").write_text("100")
print("|".join(tried))
"""


def test_idle_gpu_server_is_warned_then_stopped_a_busy_one_and_an_exempt_role_are_not(hub):
    hub.ensure_user("carol")
    assert hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["carol"]}).status_code in (200, 201)
    set_util("carme-n1", {})
    set_util("carme-n2", {})
    seen = start_gpu_servers(hub, ["alice", "bob", "carol"])
    bob = seen["bob"]
    set_util(bob["node"], {i: 80 for i in bob["gpu_indexes"]})  # bob's GPU works; alice's and carol's do not
    assert seen["carol"]["state"] == "exempt" and "role power" in seen["carol"]["reason"]

    # acceptance 5: nothing alice can write inside her job makes it look busy
    alice = seen["alice"]
    out = asyncio.run(run_code(f"{hub.url}/user/alice/", hub.user_token("alice"),
                               FAKING.replace("NODE", alice["node"]).replace("IDX", str(alice["gpu_indexes"][0]))))
    assert "wrote" not in out and "refused" in out, out

    web = login(hub, "alice")
    assert wait_until(lambda: verdicts(hub)["alice"]["state"] == "idle-warned", IDLE_S + 60), verdicts(hub)
    page = web.get(f"{hub.url}/services/carme-culler/", timeout=20).text
    assert "will be stopped at" in page and "Keep running" in page, page[:2000]
    job = alice["job_id"]
    assert wait_until(lambda: not (hub.server_model("alice") or {}).get("ready"), WARN_S + 60)
    assert wait_until(lambda: not in_squeue(job), 60), f"job {job} still in squeue"
    alice_web = as_user(hub, "alice")
    culls = lambda: alice_web.get(f"{hub.culler}/culls").json()["culls"]  # noqa: E731
    assert wait_until(culls, 60), "the stop was not recorded"  # listed once the hub's DELETE returned
    [cull] = culls()
    assert cull["job_id"] == job
    assert cull["reason"].startswith("idle: its GPUs stayed below 5 %") and cull["gpus"] == 1

    now = verdicts(hub)
    assert now["bob"]["state"] == "busy" and now["bob"]["last_sample"]["utilization"] == 80
    assert now["carol"]["state"] == "exempt"
    assert (hub.server_model("bob") or {}).get("ready") and (hub.server_model("carol") or {}).get("ready")
    own = verdicts(hub, as_user(hub, "bob"))
    assert set(own) == {"bob"}  # users see their own servers only
    r = as_user(hub, "bob").get(f"{hub.culler}/pass")
    assert r.status_code == 403
    samples = hub.session.get(f"{hub.culler}/samples/{now['bob']['job_id']}").json()["samples"]
    assert len(samples) >= 3 and samples[-1]["utilization"] == 80
    for user in ("bob", "carol"):
        hub.stop_server(user)


def test_keep_running_restarts_the_clock_once_per_period(hub):
    set_util("carme-n1", {})
    set_util("carme-n2", {})
    start_gpu_servers(hub, ["dave"])
    dave = as_user(hub, "dave")
    assert wait_until(lambda: verdicts(hub)["dave"]["state"] == "idle-warned", IDLE_S + 60)
    r = dave.post(f"{hub.culler}/keep-running", json={"server": ""})
    assert r.status_code == 200 and r.json()["keep_running_left"] == 0, r.text
    assert wait_until(lambda: verdicts(hub)["dave"]["state"] == "busy", 10)
    assert verdicts(hub)["dave"]["stop_at"] is None
    r = dave.post(f"{hub.culler}/keep-running", json={"server": ""})
    assert r.status_code == 409 and "pressed 1 times already" in r.json()["message"], r.text
    r = dave.post(f"{hub.culler}/keep-running", json={"server": "", "user": "alice"})
    assert r.status_code == 403, r.text
    r = dave.post(f"{hub.culler}/keep-running", json={"server": "", "shout": 1})
    assert r.status_code == 400 and "shout" in r.json()["message"]
    assert (hub.server_model("dave") or {}).get("ready")
    hub.stop_server("dave")


def test_a_dry_run_lists_the_candidates_and_stops_nothing(cluster):
    set_util("carme-n1", {})
    set_util("carme-n2", {})
    with culler_hub(cluster, 19830, dry_run=True) as hub:
        hub.culler = f"{hub.url}/services/carme-culler/api"
        start_gpu_servers(hub, ["erin"])

        def listed():
            answer = hub.session.get(f"{hub.culler}/pass").json()
            return [c for c in answer["would_stop"] if c["user"] == "erin"]

        assert wait_until(listed, IDLE_S + WARN_S + 60), hub.session.get(f"{hub.culler}/pass").text
        assert listed()[0]["dry_run"] is True and listed()[0]["reason"].startswith("idle:")
        assert (hub.server_model("erin") or {}).get("ready"), "a dry run stopped a server"
        assert hub.session.get(f"{hub.culler}/culls").json()["culls"] == []
        hub.stop_server("erin")
