"""Issue 4 acceptance 6: a job spawned for an LDAP user runs with the directory's uidNumber and
home (auth_state -> carme_spawner.accounts), and a directory/host disagreement refuses the spawn."""

from __future__ import annotations

import time

import pytest

from . import ldap_directory as ldap
from . import slurm_probe
from .ldap_directory import form_login

pytestmark = pytest.mark.integration

OPTIONS = {"gpus": 0, "image": "python-cpu", "runtime": "0:10"}


@pytest.fixture(scope="module")
def hub(cluster):
    ldap.script("up")
    with ldap.ldap_hub() as hub:
        yield hub


def test_alices_job_runs_as_her_ldap_uid_with_her_ldap_home(hub):
    """Acceptance 6."""
    assert form_login(hub.url, "alice", ldap.passwords()["alice"]).ok
    state = hub.session.get(f"{hub.api}/users/alice").json()["auth_state"]
    assert (state["uid"], state["home"]) == (10001, "/home/alice")
    r = hub.start_server("alice", OPTIONS)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    job = slurm_probe.job(job_id)
    assert job["UserId"] == "alice(10001)", job
    assert job["JobState"] == "RUNNING" and job["JobName"].startswith(ldap.LDAP_JOB_PREFIX), job
    assert job["WorkDir"] == "/home/alice", job
    script = slurm_probe.batch_script(job_id)
    assert "--bind /home/alice," in script, script
    hub.stop_server("alice")


def test_a_uid_that_differs_from_the_host_account_refuses_the_spawn(hub):
    """The directory is the source of truth; if the host's account disagrees, no job is submitted."""
    ldap.set_attribute("erin", "uidNumber", "20005")
    try:
        assert form_login(hub.url, "erin", ldap.passwords()["erin"]).ok
        assert hub.session.get(f"{hub.api}/users/erin").json()["auth_state"]["uid"] == 20005
        r = hub.start_server("erin", OPTIONS)
        deadline = time.monotonic() + 30
        message = "the directory says erin has uid 20005, but this host's account has uid 10005"
        while message not in hub.log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert message in hub.log_path.read_text(errors="replace"), (r.status_code, r.text, hub.log_tail())
        model = hub.server_model("erin") or {}
        assert not model.get("ready") and not hub.job_id("erin"), model
    finally:
        ldap.script("reset")
