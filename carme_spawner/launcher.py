"""Runs on the compute node, in the batch job, before the container starts.

    python3 -m carme_spawner.launcher -- apptainer exec ... IMAGE jupyterhub-singleuser ...

Picks a free TCP port on the node, reports it to the hub's port callback with the server's own
API token (from the job environment, never the command line), points JUPYTERHUB_SERVICE_URL at
that port and then `exec`s the command, so SLURM's signals reach the server directly.

It reports the port and nothing else: the hub takes the host from SLURM's allocation, not from
the job. Standard library only, so it runs with the node's plain python3.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlunparse

REPORT_PATH = "batchspawner"  # the hub path Carme's port callback serves (replacing batchspawner's)


def pick_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def report_port(api_url: str, token: str, port: int, attempts: int = 5) -> None:
    request = urllib.request.Request(
        api_url.rstrip("/") + "/" + REPORT_PATH,
        data=json.dumps({"port": port}).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                response.read()
                return
        except urllib.error.HTTPError as e:
            # the hub refused the report: retrying cannot help
            raise SystemExit(f"carme launcher: the hub refused the port report: {e.code} {e.read()[:300]!r}")
        except OSError as e:
            if attempt == attempts:
                raise SystemExit(f"carme launcher: cannot reach the hub at {api_url}: {e}")
            print(f"carme launcher: hub not reachable ({e}); retrying", file=sys.stderr, flush=True)
            time.sleep(2 * attempt)


def with_port(service_url: str, port: int) -> str:
    url = urlparse(service_url)
    return urlunparse(url._replace(netloc=f"{url.hostname}:{port}"))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise SystemExit("usage: python3 -m carme_spawner.launcher -- COMMAND [ARGS...]")
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise SystemExit("carme launcher: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be in the job environment")
    print(f"carme launcher: started at {time.time():.6f}", file=sys.stderr, flush=True)
    port = pick_port()
    if os.environ.get("JUPYTERHUB_SERVICE_URL"):
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(os.environ["JUPYTERHUB_SERVICE_URL"], port)
    report_port(api_url, token, port)
    print(f"carme launcher: port {port} reported; exec at {time.time():.6f}: {args[0]}", file=sys.stderr, flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
