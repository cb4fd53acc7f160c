"""The hub API probe as a process of its own: GET URL every --every seconds, one line per request.

    python benchmarks/api_probe.py URL --every 0.1   (the token in JUPYTERHUB_API_TOKEN, never on the command line)

Prints `<began> <seconds> <ok>` per request (began: time.monotonic(), the machine's CLOCK_MONOTONIC, so
the benchmark compares it with its own clock) until SIGTERM or SIGINT. In its own process the probe
measures the hub and not the benchmark: 50 client threads following their spawns in the benchmark's
process would hold the GIL while the probe's answer waited to be read.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--every", type=float, default=0.1)
    args = parser.parse_args()
    halt = []
    signal.signal(signal.SIGTERM, lambda *_: halt.append(1))
    signal.signal(signal.SIGINT, lambda *_: halt.append(1))
    session = requests.Session()
    session.headers["Authorization"] = f"token {os.environ['JUPYTERHUB_API_TOKEN']}"
    while not halt:
        began = time.monotonic()
        try:
            ok = session.get(args.url, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        took = time.monotonic() - began
        print(f"{began:.6f} {took:.6f} {int(ok)}", flush=True)
        rest = args.every - took
        if rest > 0 and not halt:
            time.sleep(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
