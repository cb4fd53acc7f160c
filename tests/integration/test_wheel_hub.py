"""Issue 23, acceptance 6: from a fresh venv, `pip install <the wheel built from this tree>`, then `carme hub
--settings <file>` starts a hub (the installed carme_hub/config.py) that answers /hub/api and spawns a server on
the dev cluster. The jobs run /opt/carme/venv's jupyterhub-singleuser (the settings' CarmeSpawner.cmd), as a
site's nodes run their own install. pip fetches the dependencies from PyPI (its cache makes a rerun quick)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from . import slurm_probe
from .hub import REPO, Hub
from .test_catalog import login

pytestmark = pytest.mark.integration

PUBLIC, HUB_PORT = 20620, 20682  # helper-22's ports (+1 proxy, +2..+9 services)
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}


def run(argv: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert r.returncode == 0, f"{argv}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def venv():
    """A fresh venv with the wheel installed (built from a copy of the tree: pip writes build/ and egg-info)."""
    work = Path(tempfile.mkdtemp(prefix="carme-wheel-"))
    files = run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard"], 60).stdout.split("\n")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (work / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / "src" / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist",
         work / "src"], 300)
    [wheel] = (work / "dist").glob("carme-*.whl")
    run(["/usr/bin/python3", "-m", "venv", work / "venv"], 120)
    run([work / "venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "-q", wheel], 900)
    yield work / "venv"
    shutil.rmtree(work, ignore_errors=True)


class WheelHub(Hub):
    """The harness's hub, started as a site would: `carme hub --settings FILE` from the fresh venv."""

    def __init__(self, venv: Path, **kwargs):
        super().__init__(**kwargs)
        self.venv = venv

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PATH"] = f"{self.venv / 'bin'}:{env['PATH']}"  # the wheel's carme and jupyterhub first
        env.pop("CARME_SETTINGS")  # given by --settings
        return env

    def start(self, timeout: float = 90) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([str(self.venv / "bin" / "carme"), "hub", "--settings", str(self.settings)],
                                         cwd=self.workdir, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"carme hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.session.get(f"{self.api}/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"carme hub did not answer within {timeout} s:\n{self.log_tail()}")


def test_a_wheel_in_a_fresh_venv_starts_a_hub_that_spawns_on_the_cluster(cluster, venv):
    config = run([venv / "bin" / "carme", "hub", "--show-config"], 60).stdout.strip()
    assert config.startswith(str(venv)) and config.endswith("carme_hub/config.py")
    hub = WheelHub(venv, ports=(PUBLIC, HUB_PORT, PUBLIC + 1), job_prefix="carme-whl-")
    try:
        hub.start()
        assert str(venv) in " ".join(Path(f"/proc/{hub.proc.pid}/cmdline").read_text().split("\0"))
        assert hub.session.get(f"{hub.api}/", timeout=10).json()["version"]
        r = hub.start_server("alice", GPU)
        assert r.status_code in (201, 202), r.text
        model = hub.wait_ready("alice", timeout=240)
        job_id = str(model["state"]["job_id"])
        assert slurm_probe.job(job_id)["JobState"] == "RUNNING"
        page = login(hub, "alice").get(f"{hub.url}/user/alice/api/status", timeout=30)
        assert page.status_code == 200, page.text[:300]
        hub.stop_server("alice")
    finally:
        try:
            hub.session.delete(hub.server_url("alice"), timeout=10)
        except requests.RequestException:
            pass
        slurm_probe.cancel_all(hub.job_prefix)
        hub.close()
