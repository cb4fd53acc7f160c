"""Issue 17, acceptance 2: every spawn logs one line with the time of each step, the progress
events carry the step times, and /hub/metrics has a histogram per step.

Own ports (19000/19081/19001) and job prefix (carme-steps-).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub(ports=(19000, 19081, 19001), job_prefix="carme-steps-", harness_scopes=("read:metrics",)) as hub:
        yield hub


def test_a_spawn_reports_the_time_of_each_step(hub):
    hub.ensure_user("alice")
    # the POST returns once the server is up when that is quick: read the progress stream beside it
    with ThreadPoolExecutor(1) as pool:
        started = pool.submit(hub.start_server, "alice", {"gpus": 0, "image": "python-cpu"})
        time.sleep(0.2)
        events = hub.progress_events("alice")
        assert started.result().status_code in (201, 202)
    hub.wait_ready("alice")
    steps = [e["carme_steps"] for e in events if "carme_steps" in e]
    assert steps, events
    last = steps[-1]
    order = ["options parsed", "admitted", "script rendered", "sbatch returned", "running in SLURM", "port reported",
             "HTTP answered"]
    assert list(last) == order, last
    assert all(v >= 0 for v in last.values()) and last["HTTP answered"] == max(last.values()), last
    assert last["options parsed"] <= last["sbatch returned"] <= last["running in SLURM"], last
    assert "JupyterLab answers" in events[-2]["message"] or any("JupyterLab answers" in e["message"] for e in events)

    line = wait_until(lambda: next((l for l in hub.log_tail(400).splitlines() if "Spawn alice: ready in" in l), None), 30)
    assert line, hub.log_tail(80)
    print(f"\n{line}")
    for step in [*order, "launcher started", "container exec", "proxy route added"]:
        assert re.search(rf"{step} [0-9]+\.[0-9]{{3}} s", line), (step, line)

    metrics = hub.session.get(f"{hub.url}/hub/metrics", timeout=10)
    assert metrics.status_code == 200, metrics.text
    assert 'carme_spawn_step_seconds_count{step="proxy route added"} 1.0' in metrics.text
    hub.stop_server("alice")
