"""Runs on the compute node, in the batch job, before the container starts.

    python3 -m carme_spawner.launcher -- apptainer exec ... IMAGE jupyterhub-singleuser ...

Picks a free TCP port on the node, points JUPYTERHUB_SERVICE_URL at it and `exec`s the command at
once, so SLURM's signals reach the server directly. A forked helper reports the port to the hub's
port callback meanwhile, with the server's own API token (from the job environment, never the
command line): the report's round trip and the HTTP client's imports are not on the spawn's path,
the server takes seconds to start anyway. If the hub refuses the report or cannot be reached, the
helper stops the server (SIGTERM) and says why in the job's output, so the job ends and the spawn
fails with that reason.

It reports the port and nothing else: the hub takes the host from SLURM's allocation, not from
the job. Standard library only, so it runs with the node's plain python3; it imports little
before the exec (every module is start-up time of every spawn).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

REPORT_PATH = "batchspawner"  # the hub path Carme's port callback serves (replacing batchspawner's)


def pick_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def report_port(api_url: str, token: str, port: int, attempts: int = 5) -> None:
    """POST the port to the hub; SystemExit with the reason if it refuses or cannot be reached."""
    import json
    import urllib.error
    import urllib.request

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
    """`service_url` (scheme://host[:port]/path, as the spawner wrote it) with `port`."""
    scheme, _, rest = service_url.partition("://")
    netloc, slash, path = rest.partition("/")
    host = netloc if netloc.endswith("]") or ":" not in netloc else netloc.rsplit(":", 1)[0]
    return f"{scheme}://{host}:{port}{slash}{path}"


def report_in_background(api_url: str, token: str, port: int, server_pid: int) -> None:
    """Fork a helper that reports the port and, if that fails, stops `server_pid` (this process,
    once it has exec'd the server). Detached by a double fork: nobody needs to reap it."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the first child exits at once; its child does the work
        return
    try:
        if os.fork():
            os._exit(0)
        try:
            report_port(api_url, token, port)
            print(f"carme launcher: port {port} reported at {time.time():.6f}", file=sys.stderr, flush=True)
        except SystemExit as e:
            print(f"{e}; stopping the server", file=sys.stderr, flush=True)
            os.kill(server_pid, signal.SIGTERM)
            os._exit(1)
    except BaseException as e:  # never let the helper return into the caller's code
        print(f"carme launcher: port report failed: {e!r}", file=sys.stderr, flush=True)
        os.kill(server_pid, signal.SIGTERM)
        os._exit(1)
    os._exit(0)


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
    report_in_background(api_url, token, port, os.getpid())
    print(f"carme launcher: port {port} chosen; exec at {time.time():.6f}: {args[0]}", file=sys.stderr, flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
