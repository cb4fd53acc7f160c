"""Issue 19, acceptance 2 (and the form's start estimate): with 3 of carme-n1's 4 a100 taken by jobs started here, the spawn form
shows "carme-n1 1 free" for that type within one view interval, read from the hub's one view:
10 reloads of the form make no sinfo or scontrol call of their own. Screenshot in test-artifacts/."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub

from .conftest import login
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration
NODE_INTERVAL = 5


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub(ports=(19300, 19381, 19301), job_prefix="carme-gpuform-",
                     extra_env={"CARME__SlurmView__node_interval": str(NODE_INTERVAL)}) as hub:
        yield hub


def test_the_form_shows_the_free_gpus_of_each_type_from_the_one_view(hub, page):
    hub.ensure_user("alice")
    login(page, hub, "alice", r".*/hub/spawn.*")
    # the page asks SLURM (sbatch --test-only as alice) when the request would start: now, on an idle cluster
    page.wait_for_function(
        "document.querySelector('#carme-estimate .carme-estimate-text').textContent.includes('starts now')",
        timeout=30_000)
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-J", "carme-gpuform-blocker", "-p", "batch", "-w", "carme-n1",
         "--gres=gpu:a100:3", "-t", "10", "-o", "/dev/null", "--wrap", "sleep 600"],
        check=True, capture_output=True, text=True).stdout.strip()
    try:
        assert wait_until(lambda: slurm_probe.job(blocker).get("JobState") == "RUNNING", 30)
        running = time.monotonic()

        def shows_one_free() -> bool:
            page.reload()
            row = page.locator('tr[data-partition="interactive"][data-type="a100"]')
            return "carme-n1 1 free" in row.inner_text()

        assert wait_until(shows_one_free, 2 * NODE_INTERVAL + 5, interval=1), page.inner_text("#carme-gpus-free")
        print(f"\nthe form showed carme-n1 1 free {time.monotonic() - running:.1f} s after the jobs ran")
        page.select_option("#carme-gpu-type", "a100")
        assert "free now, at most 4 on one node" in page.inner_text("#carme-gpu-type-hint")
        page.artifact("gpu-types-on-the-form")

        calls_before = {name: len(hub.query_calls(name)) for name in ("sinfo", "scontrol")}
        started = time.monotonic()
        for _ in range(10):
            page.reload()
            assert page.locator("#carme-gpus-free").is_visible()
        took = time.monotonic() - started
        made = {name: len(hub.query_calls(name)) - calls_before[name] for name in ("sinfo", "scontrol")}
        # the view's own interval may fall into the window: at most one sinfo per NODE_INTERVAL
        assert made["sinfo"] <= took / NODE_INTERVAL + 1, (made, took)
        assert made["scontrol"] <= took / 30 + 1, (made, took)
        assert "(as of " in page.inner_text("#carme-gpus-free summary")
    finally:
        subprocess.run(["scancel", blocker], check=False)
