"""The hub API probe as a process of its own: GET URL every --every seconds, one line per request.

    python benchmarks/api_probe.py URL --every 0.2   (the token in JUPYTERHUB_API_TOKEN, never on the command line)

Prints `<began> <seconds> <ok>` per request (began: time.monotonic(), the machine's CLOCK_MONOTONIC, so
the benchmark compares it with its own clock) until SIGTERM or SIGINT.
- Open loop: a request leaves every --every seconds whether or not the last one has answered (up to
  MAX_IN_FLIGHT at once). A probe that waited for each answer would ask a stalled hub less often and
  so hide its stalls (coordinated omission), and it would load a quick hub more than a slow one.
- In its own process it measures the hub and not the benchmark: 50 client threads following their
  spawns in the benchmark's process would hold the GIL while the probe's answer waited to be read.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

MAX_IN_FLIGHT = 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--every", type=float, default=0.2)
    args = parser.parse_args()
    halt = []
    signal.signal(signal.SIGTERM, lambda *_: halt.append(1))
    signal.signal(signal.SIGINT, lambda *_: halt.append(1))
    local, printing = threading.local(), threading.Lock()
    headers = {"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"}

    def probe(began: float) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(headers)
        try:
            ok = local.session.get(args.url, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        took = time.monotonic() - began
        with printing:
            print(f"{began:.6f} {took:.6f} {int(ok)}", flush=True)

    pool = ThreadPoolExecutor(MAX_IN_FLIGHT)
    start, k = time.monotonic(), 0
    while not halt:
        due = start + k * args.every
        rest = due - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        if halt:
            break
        pool.submit(probe, time.monotonic())
        k += 1
    pool.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
