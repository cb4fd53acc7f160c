"""Issue 18, acceptance 11, in a real browser: the spawn form shows the user's use and limits and an
over-quota start says which limit; the usage page draws its chart; a manager approves a request on
the Projects page. Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.integration.conftest import running_hub

from .conftest import login

pytestmark = pytest.mark.integration

LIMITS = {"user": {"max_servers": 1, "gpus_per_job": 1, "gpu_hours": 100}}
SCOPES = ("custom:carme-quota:admin", "custom:carme-quota:read", "access:services!service=carme-quota")


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__CarmeQuota__role_limits": json.dumps(LIMITS),
           "CARME__Authenticator__admin_users": json.dumps(["admin", "carol"])}
    with running_hub(extra_env=env, ports=(18900, 18981, 18901), job_prefix="carme-qpage-",
                     harness_scopes=SCOPES) as hub:
        for user in ("alice", "carol", "dave"):
            hub.ensure_user(user)
        yield hub




def test_the_form_shows_use_and_limits_and_an_over_quota_start_names_the_limit(hub, page):
    login(page, hub, "alice")
    page.goto(f"{hub.url}/hub/spawn/alice")
    quota = page.wait_for_selector("#carme-quota")
    text = quota.inner_text()
    assert "servers: 0 of 1" in text and "GPUs per server: up to 1" in text, text
    assert re.search(r"GPU-hours this month: [0-9.]+ of 100, resets 1 \w{3}", text), text
    assert page.get_attribute("#carme-gpus", "max") == "1"  # the field's maximum follows the quota
    page.artifact("form-with-quota")

    r = hub.start_server("alice", {"gpus": 0, "image": "python-cpu"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    page.goto(f"{hub.url}/hub/spawn/alice/second")
    assert "servers: 1 of 1" in page.wait_for_selector("#carme-quota").inner_text()
    page.check("#carme-image-python-cpu")
    page.fill("#carme-gpus", "0")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_selector("text=servers at once: 1 of 1")
    page.artifact("over-quota")
    hub.stop_server("alice")


def test_the_usage_page_draws_its_chart(hub, page):
    login(page, hub, "alice")
    page.goto(f"{hub.url}/services/carme-quota/")
    page.wait_for_selector("#usage-chart svg")
    assert page.locator("#usage-chart svg rect").count() > 0
    assert page.locator('#usage-limits tr[data-limit="max_servers"]').inner_text().count("1") >= 1
    assert "GPU-hours this period" in page.inner_text("#usage-summary")
    page.artifact("usage-page")


def test_a_manager_approves_a_request_on_the_projects_page(hub, page):
    carol = {"Authorization": f"token {hub.user_token('carol')}"}
    dave = {"Authorization": f"token {hub.user_token('dave')}"}
    api = f"{hub.url}/services/carme-quota/api"
    r = requests.post(f"{api}/projects", headers=carol, timeout=30,
                      json={"name": "optics", "description": "Optics group", "template": {"gpus_per_job": 1},
                            "managers": ["carol"]})
    assert r.status_code in (201, 409), r.text
    r = requests.post(f"{api}/projects/optics/requests", headers=dave, json={"message": "laser data"}, timeout=30)
    assert r.status_code == 201, r.text

    login(page, hub, "carol")
    page.goto(f"{hub.url}/services/carme-quota/projects")
    row = page.wait_for_selector('[data-project="optics"] tr[data-request] >> text=dave')
    assert "laser data" in page.inner_text('[data-project="optics"] .project-requests')
    page.artifact("request-waiting")
    page.click('[data-project="optics"] button[value=approve]')
    page.wait_for_selector("#projects-notice")
    assert "dave approved for optics" in page.inner_text("#projects-notice")
    page.artifact("request-approved")
    assert row is not None
    projects = requests.get(f"{api}/projects", headers=dave, timeout=30).json()["projects"]
    optics = next(p for p in projects if p["name"] == "optics")
    assert optics["member"] is True and optics["gpu_hours_used"] >= 0  # members and managers see its use
