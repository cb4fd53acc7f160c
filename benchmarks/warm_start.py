"""Would a warm start pay? The single-user server started cold vs from a process that has already
imported it, timed until it answers HTTP (issue 17, "warm starts").

    /opt/carme/venv/bin/python benchmarks/warm_start.py [--samples 8]

Carme's spawn steps show where a spawn's time goes on this machine: ~0.4 s until the job runs,
then ~2.9 s until JupyterLab answers, of which ~2.6 s is Python importing jupyterhub.singleuser
and the server extensions. A warm pool can only save the part that can happen before the user
asks. Two candidates are timed here, side by side and interleaved, as the user alice, without
SLURM (the job start is the same in both; it is reported by spawn_latency.py):

  cold      `jupyterhub-singleuser` started from nothing (what every spawn does today)
  warm      a Python process that imported jupyterhub.singleuser (and what it imports) earlier
            and is then told to start, the way a pre-started job in a pool would be: timed
            from that moment until the server answers

The single-user server checks the hub's version at start, so a tiny stand-in hub API (this
process, one thread) answers /hub/api/ with JupyterHub's version. Prints the medians and the
saving; writes benchmarks/results/warm_start-<date>.json.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import jupyterhub

HERE = Path(__file__).resolve().parent
VENV = Path("/opt/carme/venv/bin")
USER = "alice"
# the warm process: import now, wait for a line on stdin, then run the server (as a pool job would)
WARM = ("import sys, jupyterhub.singleuser as su; from jupyterhub.singleuser import main; "
        "import jupyterlab, jupyter_server.serverapp; "
        "sys.stdout.write('imported\\n'); sys.stdout.flush(); sys.stdin.readline(); "
        "sys.argv = ['jupyterhub-singleuser'] + sys.argv[1:]; main()")


class HubVersion(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return time.monotonic()
        except urllib.error.HTTPError:
            return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer")


def once(kind: str, hub_port: int) -> float:
    port, prefix = free_port(), f"/user/{USER}/"
    env = {"PATH": f"{VENV}:/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": f"/home/{USER}",
           "JUPYTERHUB_API_TOKEN": "not-checked-at-start", "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": USER,
           "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}"}
    args = ["--ip=127.0.0.1", f"--port={port}"]
    command = [str(VENV / "jupyterhub-singleuser"), *args] if kind == "cold" else [str(VENV / "python"), "-c", WARM, *args]
    proc = subprocess.Popen(["runuser", "-u", USER, "--", *command], env=env, cwd="/tmp", text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if kind == "warm":
            assert proc.stdout.readline().strip() == "imported"
            time.sleep(0.5)  # idle in the pool
        began = time.monotonic()
        if kind == "warm":
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return answers(f"http://127.0.0.1:{port}{prefix}api", began + 60) - began
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubVersion)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    for i in range(args.samples):
        for kind in (("cold", "warm") if i % 2 == 0 else ("warm", "cold")):
            times[kind].append(once(kind, hub.server_address[1]))
        print(f"  sample {i + 1}: cold {times['cold'][-1]:.2f} s, warm {times['warm'][-1]:.2f} s", flush=True)
    cold, warm = (statistics.median(times[k]) for k in ("cold", "warm"))
    print(f"\nmedian until the server answers: cold {cold:.2f} s, warm (pre-imported) {warm:.2f} s;"
          f" a warm start saves {cold - warm:.2f} s ({warm / cold:.2f} of cold)")
    out = HERE / "results" / f"warm_start-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "host": os.uname().nodename,
                               "samples": args.samples, "seconds": times, "median_s": {"cold": cold, "warm": warm}},
                              indent=2) + "\n")
    print(f"results: {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
