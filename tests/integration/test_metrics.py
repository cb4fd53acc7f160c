"""Issue 23, acceptance 3: Prometheus metrics of the hub side and of each service, scraped with
prometheus_client's own parser from a real hub on the real SLURM: the running server and the GPU
counts (as `sinfo` has them) are there, a quota refusal is counted, and without the scope -> 403."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration

PORTS = (20700, 20781, 20701)
PUBLIC = PORTS[0]
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
CPU = {"gpus": 0, "image": "python-cpu", "runtime": 30}
SERVICES = ("carme-catalog", "carme-quota", "carme-culler", "carme-sessions")


@pytest.fixture(scope="module")
def hub(cluster):
    env = {
        "CARME__CarmeQuota__role_limits": json.dumps({"user": {"max_servers": 1}}),
        "CARME__carme__culler": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 7}", "interval": 2, "delay": 1,
                                            "idle_minutes": 600, "node_command": ["env", "CARME_STANDIN_NODE={node}"]}),
        "CARME__carme__sessions": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 2}),
    }
    with running_hub(extra_env=env, ports=PORTS, job_prefix="carme-metrics-",
                     harness_scopes=("read:metrics", "custom:carme-metrics:read")) as hub:
        hub.ensure_user("alice")
        r = hub.start_server("alice", GPU)
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("alice")
        yield hub


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(hub, path: str, headers=None) -> dict[tuple[str, tuple], float]:
    r = (requests.get(f"{hub.url}{path}", headers=headers, timeout=10) if headers is not None
         else hub.session.get(f"{hub.url}{path}", timeout=10))
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return samples(r.text)


def sinfo_gpus() -> dict[str, dict[str, int]]:
    """{type: {total, allocated}} summed over the nodes, as sinfo prints Gres and GresUsed."""
    out = subprocess.run(["sinfo", "-N", "-h", "-O", "NodeList:30,Gres:80,GresUsed:120"], capture_output=True,
                         text=True, check=True).stdout
    seen, counts = set(), {}
    for line in out.splitlines():
        node, gres, used = line.split()
        if node in seen:  # a node in two partitions is listed twice
            continue
        seen.add(node)
        for kind, column in (("total", gres), ("allocated", used)):
            for gpu_type, n in re.findall(r"gpu:([^:,(]+):(\d+)", column):
                counts.setdefault(gpu_type, {"total": 0, "allocated": 0})[kind] += int(n)
    return counts


def test_the_hub_side_shows_the_gpus_as_sinfo_has_them_and_the_running_server(hub):
    expected = sinfo_gpus()
    assert expected["a100"]["allocated"] >= 1  # alice's server holds one

    def agrees():
        got = scrape(hub, "/hub/metrics")
        gpus = {(dict(labels)["type"], dict(labels)["state"]): v for (name, labels), v in got.items()
                if name == "carme_gpus"}
        now = sinfo_gpus()  # other tests' jobs on the shared cluster may come and go: compare with now
        return all(gpus.get((t, "allocated")) == c["allocated"] and
                   gpus.get((t, "allocated"), 0) + gpus.get((t, "free"), 0) + gpus.get((t, "unavailable"), 0)
                   == c["total"] for t, c in now.items()) and got

    got = wait_until(agrees, 60)  # the view's node watch is 30 s behind at most
    assert got, (sinfo_gpus(), scrape(hub, "/hub/metrics"))
    assert got["jupyterhub_running_servers", ()] >= 1
    assert got["carme_slurm_jobs", (("owner", "carme"), ("state", "running"))] >= 1
    assert got["carme_slurm_failures", (("watch", "jobs"),)] == 0
    assert 0 <= got["carme_slurm_snapshot_age_seconds", (("watch", "jobs"),)] < 60
    assert got["carme_spawn_step_seconds_count", (("step", "proxy route added"),)] >= 1


def test_a_quota_refusal_is_counted_by_its_limit(hub):
    before = scrape(hub, "/hub/metrics").get(("carme_quota_refusals_total", (("limit", "max_servers"),)), 0)
    r = hub.start_server("alice", CPU, server="second")
    assert r.status_code == 403, r.text
    after = scrape(hub, "/hub/metrics")
    assert after["carme_quota_refusals_total", (("limit", "max_servers"),)] == before + 1


def test_every_service_serves_its_metrics_to_the_scope_and_the_culler_sees_the_server(hub):
    for service in SERVICES:
        got = wait_until(lambda: hub.session.get(f"{hub.url}/services/{service}/metrics", timeout=10).ok, 60)
        assert got, (service, hub.log_tail())
        found = scrape(hub, f"/services/{service}/metrics")
        assert found["carme_service_info", (("service", service),)] == 1, service
    judged = wait_until(lambda: sum(v for (name, _), v in scrape(hub, "/services/carme-culler/metrics").items()
                                    if name == "carme_culler_servers"), 60)  # alice's server, whatever its verdict
    assert judged and judged >= 1


def test_without_the_scope_metrics_are_refused(hub):
    alice = {"Authorization": f"token {hub.user_token('alice')}"}
    assert requests.get(f"{hub.url}/hub/metrics", headers=alice, timeout=10).status_code == 403
    for service in SERVICES:
        r = requests.get(f"{hub.url}/services/{service}/metrics", headers=alice, timeout=10)
        assert r.status_code == 403, (service, r.status_code)
