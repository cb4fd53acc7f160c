"""Issue 23, acceptance 5 (the HTML part): an announcement posted with the `carme` CLI by an admin shows on the
real hub's spawn form (GET /hub/spawn, escaped) and on its home page, and is gone after its expiry; a non-admin's
post is refused with 403. The real hub, proxy and carme-announcements service; the hub reads the file the
service writes (JupyterHub.template_vars)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import running_hub
from .hub import VENV
from .listeners import free_ports
from .test_catalog import login
from .waiting import wait_until

pytestmark = pytest.mark.integration

PUBLIC = 20600  # helper-22's ports: hub 20681, proxy 20601, carme-announcements 20610
SERVICE_PORT = PUBLIC + 10
TEXT = "carme-n2 <b>drained</b> Friday 08:00-12:00"
ESCAPED = "carme-n2 &lt;b&gt;drained&lt;/b&gt; Friday 08:00-12:00"


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__announcements": json.dumps({"url": f"http://127.0.0.1:{SERVICE_PORT}",
                                                      "refresh_interval": 2}),
           "CARME__Authenticator__admin_users": json.dumps(["admin"])}
    free_ports((SERVICE_PORT,))
    try:
        with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-ann-") as hub:
            api = f"{hub.url}/services/carme-announcements/api/announcements/current"
            hub.ensure_user("admin")
            assert wait_until(lambda: hub.session.get(api, timeout=10).status_code in (200, 403), 60), hub.log_tail()
            yield hub
    finally:
        free_ports((SERVICE_PORT,))


def carme(hub, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_URL": hub.url}
    env.pop("CARME_URL", None)
    return subprocess.run([str(VENV / "bin" / "carme"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_notice_posted_by_the_cli_shows_on_the_spawn_form_escaped_and_goes_after_its_expiry(hub):
    admin = hub.user_token("admin")
    r = carme(hub, admin, "announce", TEXT, "--severity", "warning", "--expires", "45s")
    assert r.returncode == 0, r.stderr + hub.log_tail()
    assert "posted (warning)" in r.stdout
    alice = login(hub, "alice")
    page = alice.get(f"{hub.url}/hub/spawn", timeout=30)
    assert page.status_code == 200 and 'name="image"' in page.text or "spawn" in page.url, page.text[:500]
    assert ESCAPED in page.text and TEXT not in page.text, page.text[:3000]
    assert 'data-severity="warning"' in page.text
    assert ESCAPED in alice.get(f"{hub.url}/hub/home", timeout=30).text
    listed = carme(hub, admin, "announce", "--list", "--json")
    assert listed.returncode == 0 and [n["text"] for n in json.loads(listed.stdout)["announcements"]] == [TEXT]
    current = carme(hub, hub.user_token("alice"), "announce", "--current", "--json")
    assert current.returncode == 0 and json.loads(current.stdout)["announcements"][0]["severity"] == "warning"
    # the expiry: the hub filters by time itself (the file still lists it until the service's next rewrite)
    assert wait_until(lambda: ESCAPED not in alice.get(f"{hub.url}/hub/spawn", timeout=30).text, 120), \
        "the announcement is still shown after its expiry"
    audit = carme(hub, admin, "announce", "--audit", "--json")
    assert [(e["actor"], e["action"]) for e in json.loads(audit.stdout)["audit"]] == [("admin", "posted")]


def test_a_non_admin_may_not_post_and_an_admin_deletes(hub):
    alice = hub.user_token("alice")
    r = carme(hub, alice, "announce", "hello", "--expires", "1h")
    assert r.returncode == 1 and "HTTP 403" in r.stderr and "custom:carme-announcements:admin" in r.stderr, r.stderr
    admin = hub.user_token("admin")
    r = carme(hub, admin, "announce", "gone soon", "--expires", "1h", "--json")
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["id"]
    browser = login(hub, "bob")
    assert "gone soon" in browser.get(f"{hub.url}/hub/spawn", timeout=30).text
    r = carme(hub, admin, "announce", "--delete", str(ident))
    assert r.returncode == 0 and f"announcement {ident} deleted" in r.stdout
    assert wait_until(lambda: "gone soon" not in browser.get(f"{hub.url}/hub/spawn", timeout=30).text, 30)
    r = carme(hub, admin, "announce", "x", "--expires", "60d")
    assert r.returncode == 1 and "duration: at most 31 days" in r.stderr
