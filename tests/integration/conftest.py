"""Fixtures for integration tests: the real local SLURM and a real JupyterHub + proxy.

Nothing here skips: a part that cannot start fails the test run loudly.
"""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from . import slurm_probe
from .hub import REPO, Hub

TEST_USERS = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture(scope="session")
def cluster():
    """The local SLURM cluster, brought up (idempotently) by the project's own script."""
    r = subprocess.run(["bash", str(REPO / "dev" / "cluster.sh"), "up"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start:\n{r.stdout}\n{r.stderr}", pytrace=False)
    # no session-wide clean-up: each running_hub cancels its own jobs (another session may share the cluster)


@contextlib.contextmanager
def running_hub(**settings):
    """A started Hub(**settings); on exit its servers are stopped, its jobs cancelled, it is removed."""
    hub = Hub(**settings)
    try:
        hub.start()
    except RuntimeError as e:
        hub.close()
        pytest.fail(str(e), pytrace=False)
    try:
        yield hub
    finally:
        for user in TEST_USERS:
            try:
                hub.session.delete(hub.server_url(user))
            except Exception:
                pass
        slurm_probe.cancel_all(hub.job_prefix)
        hub.close()


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub() as hub:
        yield hub
