"""The hub endpoint where a starting job reports its port: Carme's, not batchspawner's.

batchspawner registers `/hub/api/batchspawner` at import time with a handler that copies every
key of the JSON body onto the spawner (`setattr`), command templates included; the token that
authorizes it sits in the job's environment, so any user with a running job could make the hub
run commands. `install()` removes that handler and serves the same path with this one, which:

- accepts only the token of the server it reports for (found among the caller's own servers,
  named servers and wrapspawner children included),
- only while that server is starting and has not reported yet,
- and only the body `{"port": <int 1024..65535>}`: any other key, type or value is a 4xx and
  changes nothing. The host always comes from SLURM's allocation, never from the job.
"""

from __future__ import annotations

import json

from batchspawner import BatchSpawnerBase
from jupyterhub.apihandlers import APIHandler
from tornado import web

from carme_slurm.hub_api import replace_api_handler

PATH = r"/api/batchspawner"
PORT_RANGE = (1024, 65535)


class PlainBatchSpawnerReport:
    """The safe part of batchspawner's protocol for a plain (non-Carme) batchspawner spawner.

    JupyterHub loads every installed spawner entry point, so this handler replaces batchspawner's
    even in a hub that never uses Carme. Such spawners still get their port (and nothing else):
    batchspawner's start() waits for `port` to become non-zero.
    """

    def __init__(self, spawner):
        self.spawner = spawner

    def accept_port_report(self, port: int) -> None:
        if self.spawner.pending != "spawn" or self.spawner.port:
            raise ValueError("this server is not waiting for a port report")
        self.spawner.port = port


def find_reporting_spawner(user, token: str):
    """The spawner (unwrapping wrapspawner parents) whose server token is `token`, or None."""
    for spawner in user.spawners.values():
        candidate = spawner
        while candidate is not None:
            if getattr(candidate, "api_token", None) == token:
                if hasattr(candidate, "accept_port_report"):
                    return candidate
                if isinstance(candidate, BatchSpawnerBase):
                    return PlainBatchSpawnerReport(candidate)
            candidate = getattr(candidate, "child_spawner", None)
    return None


def parse_report(body) -> int:
    """Validate the report body; return the port or raise HTTPError(400) naming the problem."""
    if not isinstance(body, dict):
        raise web.HTTPError(400, "the report must be a JSON object {\"port\": N}")
    unknown = sorted(str(k)[:40] for k in body if k != "port")
    if unknown:
        raise web.HTTPError(400, f"only 'port' may be reported; refused: {', '.join(unknown)}")
    port = body.get("port")
    if isinstance(port, bool) or not isinstance(port, int):
        raise web.HTTPError(400, "port: must be an integer")
    low, high = PORT_RANGE
    if not low <= port <= high:
        raise web.HTTPError(400, f"port: must be between {low} and {high}")
    return port


class PortReportHandler(APIHandler):
    """POST {"port": N} with the server's own token while that server starts."""

    async def post(self):
        user = self.current_user
        token = self.get_auth_token()
        if user is None or not token or getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "a server's own token is required")
        spawner = find_reporting_spawner(user, token)
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no batch server of yours")
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "the report must be JSON") from None
        port = parse_report(body)
        try:
            spawner.accept_port_report(port)
        except ValueError as e:
            raise web.HTTPError(409, str(e)) from None
        self.set_status(201)
        self.finish({"message": f"port {port} accepted"})


def install() -> None:
    replace_api_handler(PATH, PortReportHandler)
