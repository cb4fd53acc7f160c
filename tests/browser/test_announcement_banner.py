"""Issue 23, acceptance 5 in a real browser: an announcement posted with the `carme` CLI by an admin shows
on alice's spawn form (screenshot in test-artifacts/), as text, not markup, and is gone after its expiry."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.conftest import running_hub
from tests.integration.hub import VENV
from tests.integration.listeners import free_ports
from tests.integration.waiting import wait_until

from .conftest import login

pytestmark = pytest.mark.integration

PUBLIC = 20900
SERVICE_PORT = PUBLIC + 10
TEXT = "carme-n2 <b>drained</b> Friday 08:00-12:00"


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__announcements": json.dumps({"url": f"http://127.0.0.1:{SERVICE_PORT}",
                                                      "refresh_interval": 2}),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    free_ports((SERVICE_PORT,))
    try:
        with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-banner-") as hub:
            api = f"{hub.url}/services/carme-announcements/api/announcements/current"
            assert wait_until(lambda: hub.session.get(api, timeout=10).status_code in (200, 403), 60), hub.log_tail()
            yield hub
    finally:
        free_ports((SERVICE_PORT,))


def test_the_clis_notice_shows_on_the_spawn_form_and_goes_after_its_expiry(hub, page):
    for user in ("admin", "alice"):
        hub.ensure_user(user)
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": hub.user_token("admin"), "JUPYTERHUB_URL": hub.url}
    env.pop("CARME_URL", None)
    posted = subprocess.run([str(VENV / "bin" / "carme"), "announce", TEXT, "--severity", "warning", "--expires", "40s"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert posted.returncode == 0, posted.stderr
    login(page, hub, "alice", r".*/hub/spawn.*")
    banner = page.locator('.carme-announcement[data-severity="warning"]')
    banner.wait_for(timeout=30_000)
    assert TEXT in banner.inner_text()  # shown as text: the <b> is not markup
    assert page.locator(".carme-announcement b").count() == 0
    page.artifact("announcement-on-the-spawn-form")

    def gone() -> bool:
        page.reload()
        return page.locator(".carme-announcement").count() == 0

    assert wait_until(gone, 120, interval=3), "the announcement is still shown after its expiry"
    page.artifact("announcement-gone-after-expiry")
