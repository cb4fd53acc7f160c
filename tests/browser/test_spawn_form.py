"""Issue 3, acceptance 1: in headless Chromium, log in, see the catalog entries your role allows
(and not the others), pick an image and 1 GPU, start: JupyterLab loads through the proxy.
The form's screenshot is kept in test-artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub

from .conftest import login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub(ports=(18400, 18481, 18401)) as hub:
        yield hub


def test_form_offers_the_role_s_images_and_starts_jupyterlab_on_a_gpu(hub, page):
    hub.ensure_user("alice")
    login(page, hub, "alice", r".*/hub/spawn.*")

    offered = page.eval_on_selector_all("input[name=image]", "els => els.map(e => e.value)")
    assert {"python-cpu", "pytorch-gpu", "tensorflow-gpu", "jax-gpu"} <= set(offered), offered
    assert "rapids-gpu" not in offered  # power users and admins only
    assert page.locator("text=Your limit: 2 per server.").is_visible()  # the user role's quota (CarmeQuota)
    page.check("#carme-image-pytorch-gpu")
    page.fill("#carme-gpus", "1")
    assert "interactive" in page.inner_text("#carme-routing")
    page.artifact("spawn-form")

    page.click("#spawn_form button[type=submit]")
    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=180_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    page.artifact("jupyterlab")

    job_id = hub.job_id("alice")
    script = slurm_probe.batch_script(job_id)
    assert "--gres=gpu:1" in script and "/opt/carme/images/pytorch-gpu.sif" in script
    assert hub.server_model("alice")["user_options"]["image"] == "pytorch-gpu"

    # the last choice is the form's default next time
    hub.stop_server("alice")
    page.goto(f"{hub.url}/hub/spawn/alice")
    assert page.is_checked("#carme-image-pytorch-gpu") and page.input_value("#carme-gpus") == "1"
