"""Issue 12, acceptance 1: no user reaches the hub through the port callback.

With plain batchspawner 1.3.0, posting {"batch_cancel_cmd": "touch /tmp/x; scancel {job_id}"}
with the server token from the job's environment made the hub run `touch` as root at the next stop.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import requests

from carme_spawner import CarmeSpawner

from . import slurm_probe
from .jobs import server_token

pytestmark = pytest.mark.integration


def settable_names() -> list[str]:
    """Every trait and attribute name an attacker could hope to set on the spawner."""
    names = set(CarmeSpawner.class_trait_names()) | {n for n in dir(CarmeSpawner) if not n.startswith("__")}
    return sorted(names)


def test_port_callback_refuses_every_attribute_and_other_users(hub):
    hub.start_server("alice", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    token = server_token("alice", hub.hub_port)  # what any code in alice's job can read
    as_alice = {"Authorization": f"token {token}"}
    callback = f"{hub.api}/batchspawner"

    markers = Path(tempfile.mkdtemp(prefix="carme-marker-"))
    names = settable_names()
    assert len(names) > 100 and "batch_cancel_cmd" in names and "exec_prefix" in names
    refused = 0
    for name in names:
        command = f"touch {markers}/{name}; scancel {{job_id}}"
        for body in ({name: command}, {"port": 12345, name: command}, {name: [command]}):
            r = requests.post(callback, json=body, headers=as_alice, timeout=10)
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
            refused += 1
    # a bare port report for a server that is not starting is refused too
    r = requests.post(callback, json={"port": 12345}, headers=as_alice, timeout=10)
    assert r.status_code == 409, r.text

    # another user's server token cannot touch alice's server
    hub.start_server("bob", {"gpus": 0, "image": "python-cpu"})
    hub.wait_ready("bob")
    r = requests.post(callback, json={"port": 23456}, headers={"Authorization": f"token {server_token('bob', hub.hub_port)}"}, timeout=10)
    assert 400 <= r.status_code < 500, r.text

    # alice's server still answers on its own port through the proxy, and polls and stops cleanly
    user_token = hub.user_token("alice")
    r = requests.get(f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {user_token}"}, timeout=10)
    assert r.status_code == 200, r.text
    time.sleep(2 * hub.poll_interval)  # at least one poll of every server
    hub.stop_server("alice")
    hub.stop_server("bob")
    assert not slurm_probe.in_queue(job_id)
    assert list(markers.iterdir()) == [], "the hub ran a command a user posted"
    print(f"refused {refused} crafted port reports for {len(names)} attribute names")
