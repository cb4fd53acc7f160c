"""A hub-managed service exits promptly when the hub stops it (SIGINT, then SIGTERM).

JupyterHub starts its services before it sets its own signal handlers, so a hub started with SIGINT
ignored (a background job of a script) passes that on; a service that kept it ignored sat out the
hub's interrupt_timeout (30 s) and made every test hub's stop slow. Worker threads still busy must
not hold the exit either.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXIT_BOUND = 8.0  # seconds: generous (a loaded machine); a service that ignores the signal takes 30

#: a service whose one periodic task is stuck in a worker thread (a hung file system, say)
STUCK_SERVICE = """
import asyncio, time
from carme_services.base import CarmeService, PeriodicTask

class StuckService(CarmeService):
    name = "carme-stuck"

    def periodic_tasks(self):
        async def stuck():
            self.log.info("worker busy")
            await asyncio.to_thread(time.sleep, 120)
        return [PeriodicTask("stuck", 300, stuck)]

StuckService.launch_instance()
"""


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `jupyterhub &` in a script passes on


def start_service(argv: list[str], port: int, config: dict, sigint_ignored: bool) -> subprocess.Popen:
    env = {**os.environ, "CARME_SERVICE_CONFIG": json.dumps(config),
           "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "JUPYTERHUB_API_TOKEN": "unused",
           "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api"}
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_ignore_sigint if sigint_ignored else None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the service did not listen on {port}:\n{proc.communicate()[0]}")


def stop_with(proc: subprocess.Popen, sig: signal.Signals) -> str:
    """Send `sig`; the output of the process, which exited cleanly; one still running after
    EXIT_BOUND fails the test (and is killed)."""
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"still running {EXIT_BOUND:g} s after {sig.name}:\n{output}")
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    return output


@pytest.mark.parametrize(("sig", "sigint_ignored", "port"), [
    (signal.SIGINT, True, 21040),
    (signal.SIGINT, False, 21041),
    (signal.SIGTERM, True, 21042),
], ids=["SIGINT-inherited-ignored", "SIGINT", "SIGTERM"])
def test_the_catalog_service_exits_on_the_hub_s_stop_signal(tmp_path, sig, sigint_ignored, port):
    config = {"CatalogService": {"user_dir": str(tmp_path / "catalog-user"), "reload_interval": 1}}
    proc = start_service(["-m", "carme_services.catalog"], port, config, sigint_ignored)
    output = stop_with(proc, sig)
    assert f"carme-catalog stopped ({sig.name})" in output, output


def test_a_worker_thread_still_busy_does_not_hold_the_exit():
    proc = start_service(["-c", STUCK_SERVICE], 21043, {"StuckService": {"stop_timeout": 1}}, sigint_ignored=True)
    time.sleep(1)  # the task (due at once) is in its worker thread by now
    output = stop_with(proc, signal.SIGINT)
    assert "worker busy" in output and "carme-stuck stopped (SIGINT)" in output, output
    assert "exiting without waiting for carme-stuck-worker" in output, output
