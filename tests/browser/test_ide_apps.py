"""Issue 22, several IDEs per job behind the hub's login, in a real browser on the real hub and SLURM.

An image of the (example) catalog offers JupyterLab, TensorBoard and code-server: the spawn form
lists them and opens the one chosen first (TensorBoard), the Sessions card links each, JupyterLab's
launcher shows them, and TensorBoard and code-server work through /user/alice/... . Without
alice's login the same URLs end at the hub's login, bob gets 403. Each app listens on a unix
socket in a 0700 directory of alice (bob cannot connect to it) and no process of the job opens a
new TCP listener for them (`ss -ltnp` before and after). Screenshots in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import running_hub

from .conftest import login

pytestmark = pytest.mark.integration

PUBLIC = 20200  # helper-20's ports: public, +1 proxy API, +2 catalog, +4 quota, +8 sessions, +81 hub
IMAGE = "python-cpu"  # the example catalog: interfaces [jupyterlab, tensorboard, code-server]
RUN = "carme-ide-test/demo"  # a TensorBoard run in alice's home (TensorBoard's logdir)
EVENTS = """
import sys
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
w = EventFileWriter(sys.argv[1])
for step in range(20):
    value = summary_pb2.Summary.Value(tag="carme/loss", simple_value=1.0 / (step + 1))
    w.add_event(event_pb2.Event(step=step, wall_time=1.7e9 + step, summary=summary_pb2.Summary(value=[value])))
w.close()
"""


@pytest.fixture(scope="module")
def hub(cluster):
    env = {"CARME__carme__sessions": json.dumps({"url": f"http://127.0.0.1:{PUBLIC + 8}", "interval": 1,
                                                 "poll_seconds": 1})}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix="carme-ide-") as hub:
        for user in ("alice", "bob"):
            hub.ensure_user(user)
        home = pwd.getpwnam("alice").pw_dir
        subprocess.run(["runuser", "-u", "alice", "--", "/opt/carme/venv/bin/python", "-c", EVENTS,
                        f"{home}/{RUN}"], check=True, cwd="/")
        yield hub


def job_pids(job_id: str) -> set[int]:
    """The processes of SLURM job `job_id` on this host (their environment names it)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in environ:
            pids.add(int(entry.name))
    return pids


def tcp_listeners() -> set[tuple[str, int]]:
    """(local address:port, pid) of every listening TCP socket on the node (`ss -ltnpH`)."""
    out = subprocess.run(["ss", "-ltnpH"], check=True, capture_output=True, text=True).stdout
    return {(line.split()[3], int(pid)) for line in out.splitlines() for pid in re.findall(r"pid=(\d+)", line)}


def unix_listeners(pids: set[int]) -> dict[str, int]:
    """path -> pid of the listening unix sockets of `pids` (`ss -xlpH`)."""
    out = subprocess.run(["ss", "-xlpH"], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids and fields[4].startswith("/"):
                found[fields[4]] = pid
    return found


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def server_started(hub, user: str, server: str = "") -> dict:
    model = hub.server_model(user, server)
    if not (model and model.get("ready")):
        r = hub.start_server(user, {"image": IMAGE, "open_first": "tensorboard"}, server)
        assert r.status_code in (201, 202), r.text
        model = hub.wait_ready(user, server)
    return model


def test_the_form_opens_tensorboard_first_and_the_card_and_launcher_link_every_interface(hub, page):
    login(page, hub, "alice")
    page.goto(f"{hub.url}/hub/spawn/alice")
    page.check(f"#carme-image-{IMAGE}")
    listed = page.locator(f".carme-image:has(#carme-image-{IMAGE}) .carme-image-interfaces [data-interface]")
    assert listed.all_inner_texts() == ["JupyterLab", "TensorBoard", "VS Code (code-server)"]
    choices = page.locator("#carme-open-first option").all_inner_texts()
    assert choices == ["JupyterLab", "TensorBoard", "VS Code (code-server)"], choices
    page.check("#carme-image-jax-gpu")  # an image with JupyterLab only: nothing else to open first
    assert page.locator("#carme-open-first option").all_inner_texts() == ["JupyterLab"]
    assert page.locator("#carme-open-first").is_disabled()
    page.check(f"#carme-image-{IMAGE}")
    page.fill("#carme-gpus", "0")
    page.select_option("#carme-open-first", "tensorboard")
    page.artifact("form-open-first")
    page.click("#spawn_form button[type=submit]")

    # the server opens at TensorBoard (its default URL), served through alice's server
    page.wait_for_url(re.compile(r".*/user/alice/tensorboard/.*"), timeout=240_000)
    page.wait_for_selector("text=carme/loss", timeout=120_000)  # the run's scalar, read from alice's home
    runs = page.request.get(f"{hub.url}/user/alice/tensorboard/data/runs").json()
    assert RUN in runs, runs
    page.artifact("tensorboard")
    model = hub.server_model("alice")
    assert model["user_options"]["open_first"] == "tensorboard"
    assert model["state"]["interfaces"] == [["jupyterlab", "JupyterLab"], ["tensorboard", "TensorBoard"],
                                            ["code-server", "VS Code (code-server)"]]

    # the Sessions card links each interface
    page.goto(f"{hub.url}/services/carme-sessions/")
    links = page.wait_for_selector("[data-status=running] [data-interfaces]", timeout=60_000)
    hrefs = {a.get_attribute("data-interface"): a.get_attribute("href") for a in links.query_selector_all("a")}
    assert hrefs == {"jupyterlab": "/user/alice/lab", "tensorboard": "/user/alice/tensorboard/",
                     "code-server": "/user/alice/code-server/"}, hrefs
    page.artifact("session-card")

    # code-server (VS Code in the browser) from the card
    page.click("[data-interface=code-server]")
    page.wait_for_url(re.compile(r".*/user/alice/code-server/.*"), timeout=60_000)
    page.wait_for_selector(".monaco-workbench", timeout=180_000)
    page.wait_for_timeout(3000)  # let the workbench draw for the screenshot
    page.artifact("code-server")

    # JupyterLab's launcher shows both apps; its TensorBoard entry opens a new browser tab
    page.goto(f"{hub.url}/user/alice/lab")
    page.wait_for_selector(".jp-Launcher-sectionTitle:has-text('Web apps')", timeout=120_000)
    for title in ("TensorBoard", "VS Code (code-server)"):
        assert page.locator(f".jp-LauncherCard:has-text('{title}')").count() == 1, title
    page.artifact("launcher")
    with page.context.expect_page() as opened:
        page.click(".jp-LauncherCard:has-text('TensorBoard')")
    tab = opened.value
    tab.wait_for_url(re.compile(r".*/user/alice/tensorboard/.*"), timeout=60_000)
    tab.wait_for_selector("text=carme/loss", timeout=120_000)
    tab.close()


def test_without_alices_login_the_apps_are_refused_and_bob_gets_403(hub, browser):
    server_started(hub, "alice")
    urls = [f"{hub.url}/user/alice/tensorboard/", f"{hub.url}/user/alice/code-server/"]
    for url in urls:
        # no login: the server sends the request to the hub's OAuth, which ends at the hub's login page
        first = requests.get(url, allow_redirects=False, timeout=30)
        assert first.status_code == 302 and "/hub/api/oauth2/authorize" in first.headers["Location"], first.headers
        final = requests.get(url, timeout=30)
        assert final.url.startswith(f"{hub.url}/hub/login"), final.url
        assert "TensorBoard" not in final.text and "workbench" not in final.text
        # tokens: bob's is refused, alice's own is accepted
        bob = requests.get(url, headers={"Authorization": f"token {hub.user_token('bob')}"}, allow_redirects=False,
                           timeout=30)
        assert bob.status_code == 403, (bob.status_code, bob.text[:200])
        alice = requests.get(url, headers={"Authorization": f"token {hub.user_token('alice')}"},
                             allow_redirects=False, timeout=60)
        assert alice.status_code in (200, 302) and "/hub/" not in alice.headers.get("Location", ""), alice.headers

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        anonymous = context.new_page()
        anonymous.goto(urls[0])
        anonymous.wait_for_url(re.compile(r".*/hub/login.*"))
        assert anonymous.locator("input[name=username]").count() == 1
        anonymous.screenshot(path=str(artifacts() / "test_ide_apps--no-login-redirects-to-login.png"), full_page=True)
        login(anonymous, hub, "bob")
        for url in urls:
            response = anonymous.goto(url)
            assert response.status == 403, (url, response.status, anonymous.url)
        anonymous.screenshot(path=str(artifacts() / "test_ide_apps--bob-gets-403.png"), full_page=True)
    finally:
        context.close()


def test_the_apps_listen_on_unix_sockets_in_a_private_directory_and_open_no_tcp_port(hub):
    before = tcp_listeners()
    model = server_started(hub, "alice", "sockets")
    job_id = str(model["state"]["job_id"])
    token = {"Authorization": f"token {hub.user_token('alice')}"}
    for app in ("tensorboard", "code-server"):  # start both (jupyter-server-proxy starts an app at its first request)
        r = requests.get(f"{hub.url}/user/alice/sockets/{app}/", headers=token, timeout=120)
        assert r.status_code == 200, (app, r.status_code, r.text[:300])

    pids = job_pids(job_id)
    sockets = unix_listeners(pids)
    apps = {Path(path).name: pid for path, pid in sockets.items() if Path(path).parent.name.startswith("carme-apps-")}
    assert set(apps) == {"tensorboard.sock", "code-server.sock"}, sockets
    assert "carme_lab.apps.tensorboard_socket" in command_of(apps["tensorboard.sock"])
    assert "code-server" in command_of(apps["code-server.sock"])
    code_server_dir = Path(next(p for p in sockets if p.endswith("/code-server.sock"))).parent
    assert (code_server_dir / "code-server.sock.yaml").is_file()  # its config (generated password) stays private too
    alice = pwd.getpwnam("alice").pw_uid
    for path in (p for p in sockets if Path(p).name in apps):
        directory = os.stat(Path(path).parent)
        assert stat.S_IMODE(directory.st_mode) == 0o700 and directory.st_uid == alice, (path, oct(directory.st_mode))
        assert os.stat(path).st_uid == alice
        assert not os.stat(path).st_mode & 0o077  # the socket file too: alice only
        # another user of the node cannot connect to the socket
        probe = subprocess.run(
            ["runuser", "-u", "bob", "--", "/usr/bin/python3", "-c",
             "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])", path],
            capture_output=True, text=True, cwd="/")
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, (path, probe.stderr)

    # no new TCP listener of the job on the node but its JupyterLab server (`ss -ltnp` before and after)
    pids = job_pids(job_id)
    new = {(addr, pid) for addr, pid in tcp_listeners() - before if pid in pids}
    servers = {(addr, pid) for addr, pid in new if "jupyterhub-singleuser" in command_of(pid)}
    assert len(servers) == 1 and new == servers, [(addr, command_of(pid)) for addr, pid in new]
    assert set(apps.values()) <= pids  # the apps run in the job (so they were checked above)
    hub.stop_server("alice", "sockets")


def artifacts() -> Path:
    from .conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
