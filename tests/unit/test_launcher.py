"""The node-side launcher: the port is chosen and the server exec'd at once, the report runs beside
it, and a refused report stops the server (the job ends, the spawn fails with the reason)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from carme_spawner.launcher import with_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(("url", "expected"), [
    ("http://carme-n1:8888/user/alice/", "http://carme-n1:40000/user/alice/"),
    ("http://carme-n1/user/alice/", "http://carme-n1:40000/user/alice/"),
    ("https://[fd00::1]:8888/user/a%20b/", "https://[fd00::1]:40000/user/a%20b/"),
    ("http://[fd00::1]/", "http://[fd00::1]:40000/"),
    ("http://127.0.0.1:1", "http://127.0.0.1:40000"),
])
def test_the_service_url_gets_the_chosen_port(url, expected):
    assert with_port(url, 40000) == expected


class FakeHub:
    """The hub's port callback: records each report and answers with `status`."""

    def __init__(self, status: int):
        self.reports: list[tuple[str, str, dict]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hub.reports.append((self.path, self.headers["Authorization"], body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def launch(hub: FakeHub, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": "s3cret-token",
           "JUPYTERHUB_SERVICE_URL": "http://carme-n1:1/user/alice/", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "carme_spawner.launcher", "--", sys.executable, "-c", command],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_the_server_is_the_launcher_s_own_process_and_its_port_is_reported():
    hub = FakeHub(201)
    try:
        # the server (here: python) prints its pid and URL, then waits for the report to arrive
        done = launch(hub, "import os, time; print(os.getpid(), os.environ['JUPYTERHUB_SERVICE_URL']); time.sleep(1)")
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr
    pid, url = done.stdout.split()
    port = int(url.split(":")[2].split("/")[0])
    assert url == f"http://carme-n1:{port}/user/alice/"
    assert hub.reports == [("/hub/api/batchspawner", "token s3cret-token", {"port": port})]
    assert f"port {port} chosen; exec at " in done.stderr and f"port {port} reported at " in done.stderr
    assert "s3cret-token" not in done.stderr + done.stdout  # the token never reaches the job's output


def test_a_plain_http_report_imports_neither_urllib_nor_ssl():
    hub = FakeHub(201)
    probe = ("import sys; from carme_spawner.launcher import post; "
             f"print(post({hub.api_url + '/batchspawner'!r}, 't', b'{{\"port\": 5}}', 10)[0], "
             "sorted(m for m in ('ssl', 'urllib.request', 'http.client', 'email') if m in sys.modules))")
    try:
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": REPO},
                              capture_output=True, text=True, timeout=30)
    finally:
        hub.close()
    assert done.stdout.split(maxsplit=1) == ["201", "[]\n"], done.stderr  # ~40 ms of a node's CPU per spawn saved
    assert hub.reports == [("/hub/api/batchspawner", "token t", {"port": 5})]


def test_a_report_answered_on_a_connection_kept_open_is_read_at_its_length():
    import socket

    from carme_spawner.launcher import post

    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def keep_alive_server():  # answers, then keeps the connection open (a proxy ignoring Connection: close)
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            release.wait(30)

    threading.Thread(target=keep_alive_server, daemon=True).start()
    t0 = time.monotonic()
    try:
        status, body = post(f"http://127.0.0.1:{listener.getsockname()[1]}/hub/api/batchspawner", "t", b"{}", timeout=20)
    finally:
        release.set()
        listener.close()
    assert (status, body) == (201, b"{}")
    assert time.monotonic() - t0 < 5  # at the answer's length, not at the 20 s time-out


def test_an_https_report_checks_the_hub_s_certificate(tmp_path):
    import ssl

    cert, key = tmp_path / "hub.crt", tmp_path / "hub.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    hub = FakeHub(201)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    hub.server.socket = context.wrap_socket(hub.server.socket, server_side=True)
    url = f"https://localhost:{hub.server.server_address[1]}/hub/api/batchspawner"
    probe = f"from carme_spawner.launcher import post; print(post({url!r}, 't', b'{{\"port\": 6}}', 10)[0])"
    try:
        trusted = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": REPO,
                                 "SSL_CERT_FILE": str(cert)}, capture_output=True, text=True, timeout=30)
        untrusted = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": REPO},
                                   capture_output=True, text=True, timeout=30)
    finally:
        hub.close()
    assert trusted.stdout.strip() == "201", trusted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr  # an unknown certificate is no hub
    assert hub.reports == [("/hub/api/batchspawner", "token t", {"port": 6})]


def test_a_refused_report_stops_the_server_and_says_why():
    hub = FakeHub(403)
    try:
        done = launch(hub, "import time; time.sleep(60)")  # a server that would run on
    finally:
        hub.close()
    assert done.returncode == -15  # SIGTERM from the launcher's helper, long before the 60 s
    assert "the hub refused the port report: 403" in done.stderr
    assert "stopping the server" in done.stderr


def test_without_the_hub_s_address_and_token_nothing_runs():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    done = subprocess.run([sys.executable, "-m", "carme_spawner.launcher", "--", "touch", "/tmp/carme-launcher-ran"],
                          env={**env, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be in the job environment" in done.stderr
    assert not os.path.exists("/tmp/carme-launcher-ran")


# ---- the start gate ----------------------------------------------------------------------------------
def test_a_start_slot_is_one_flock_per_slot_and_a_full_gate_waits_only_so_long(tmp_path):
    from carme_spawner.launcher import take_start_slot

    gate = str(tmp_path / "gate")
    first = take_start_slot(gate, 1, wait=1)
    assert first is not None
    assert oct(os.stat(gate).st_mode & 0o7777) == "0o1777"  # like /tmp: every user's jobs share it
    t0 = time.monotonic()
    assert take_start_slot(gate, 1, wait=0.3) is None  # full: gave up after the wait
    assert time.monotonic() - t0 >= 0.3
    os.close(first)
    again = take_start_slot(gate, 1, wait=1)
    assert again is not None
    os.close(again)


WAITER = """
import resource, sys, time
from carme_spawner.launcher import take_start_slot
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
t0, cpu0 = time.monotonic(), cpu()
fd = take_start_slot(sys.argv[1], int(sys.argv[2]), wait=20)
print(fd is not None, time.time(), time.monotonic() - t0, cpu() - cpu0, flush=True)
"""


@pytest.mark.parametrize("slots", [1, 2])
def test_a_full_gate_is_waited_for_asleep_and_a_freed_slot_taken_within_a_turn(tmp_path, slots):
    from carme_spawner.launcher import SLOT_TURN, take_start_slot

    gate = str(tmp_path / "gate")
    held = [take_start_slot(gate, slots, wait=1) for _ in range(slots)]
    assert all(fd is not None for fd in held)
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, gate, str(slots)], env={**os.environ, "PYTHONPATH": REPO},
                              stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)
    freed = time.time()
    os.close(held.pop())  # the last slot the waiter may not be asleep on
    out, _ = waiter.communicate(timeout=30)
    for fd in held:
        os.close(fd)
    got, at, took, cpu = out.split()
    assert got == "True" and float(took) >= 1.9, out
    assert float(at) - freed < SLOT_TURN + 1.0, out  # within a turn of the slot coming free (generous)
    assert float(cpu) < 0.01, out  # 2 s of waiting took next to no CPU (polling every 20 ms: 0.025 s)


def test_an_unusable_gate_is_no_gate(tmp_path):
    from carme_spawner.launcher import take_start_slot

    t0 = time.monotonic()
    assert take_start_slot("/proc/carme-no-such-gate", 2, wait=30) is None
    assert take_start_slot("", 2, wait=30) is None
    assert time.monotonic() - t0 < 5  # at once, not after the 30 s


SERVER = """
import os, socket, sys, time
start = time.time()
time.sleep(0.8)  # imports
port = int(os.environ["JUPYTERHUB_SERVICE_URL"].split(":")[2].split("/")[0])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", port)); s.listen(8)
print(start, time.time(), flush=True)
time.sleep(0.5)
"""


def test_servers_beyond_the_node_s_cpus_start_one_after_another(tmp_path):
    from carme_spawner.launcher import take_start_slot

    gate = str(tmp_path / "gate")
    held = [take_start_slot(gate, k + 1, wait=1) for k in range((os.cpu_count() or 1) - 1)]  # one slot left
    hub = FakeHub(201)
    env = {**os.environ, "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": "t",
           "JUPYTERHUB_SERVICE_URL": "http://carme-n1:1/user/alice/", "PYTHONPATH": REPO,
           "CARME_START_GATE_DIR": gate, "CARME_START_GATE_WAIT": "20"}
    try:
        servers = [subprocess.Popen([sys.executable, "-m", "carme_spawner.launcher", "--", sys.executable, "-c", SERVER],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [server.communicate(timeout=60) for server in servers]
    finally:
        hub.close()
        for fd in held:
            os.close(fd)
    (start_a, open_a), (start_b, open_b) = sorted(tuple(map(float, out.split())) for out, _ in outputs)
    # the second started its imports only once the first's port was open
    assert start_b >= open_a - 0.05, outputs
    assert any("for a start slot" in err for _, err in outputs), outputs
    assert len(hub.reports) == 2
