"""The session's relay to the hub's services (a Jupyter server extension, loaded by carme_lab).

    GET  <server>/carme/session        the facts and warnings of this server (carme_lab.facts)
    POST <server>/carme/extend         {"minutes": N}: carme-sessions' Extend of this server
    POST <server>/carme/keep-running   carme-culler's Keep running of this server

The handlers answer the server's own authenticated users (the hub's OAuth, as every page of the
server) and call the services with the session's token, $JUPYTERHUB_API_TOKEN, never sent to the
page nor logged. A service's refusal passes through with its status and words.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode, default
from traitlets.config import Configurable

from .facts import CULLER, SESSIONS, session_facts


class CarmeLab(Configurable):
    """Where the session finds the hub's services (set by CarmeSpawner in the job's environment)."""

    services_url = Unicode(config=True, help="The hub's services, e.g. https://carme.example.org/services/ "
                           "(default: $CARME_SERVICES_URL, which CarmeSpawner sets).")
    server_name = Unicode(config=True, help="This server's name on the hub ('' the default server; default: "
                          "$JUPYTERHUB_SERVER_NAME).")
    timeout = Float(10.0, config=True, help="Seconds a service may take to answer.")

    @default("services_url")
    def _default_services_url(self):
        return os.environ.get("CARME_SERVICES_URL", "")

    @default("server_name")
    def _default_server_name(self):
        return os.environ.get("JUPYTERHUB_SERVER_NAME", "")

    def url(self, service: str, path: str) -> str:
        return f"{self.services_url.rstrip('/')}/{service}/{path}"

    async def call(self, service: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """(status, JSON answer) of one request to `service`; status 0 when it could not be reached."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not self.services_url or not token:
            return 0, {"message": "this session does not know the hub's services ($CARME_SERVICES_URL, "
                                  "$JUPYTERHUB_API_TOKEN)"}
        request = HTTPRequest(self.url(service, path), method="POST" if body is not None else "GET",
                              body=json.dumps(body) if body is not None else None,
                              headers={"Authorization": f"token {token}", "Content-Type": "application/json",
                                       "Accept": "application/json"},
                              request_timeout=self.timeout, connect_timeout=self.timeout, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request)
            return response.code, _json(response.body)
        except HTTPClientError as e:
            answer = _json(e.response.body if e.response is not None else b"")
            answer.setdefault("message", str(e))
            return e.code, answer
        except (OSError, asyncio.TimeoutError) as e:
            return 0, {"message": f"{service} did not answer: {e}"}


def _json(body: bytes) -> dict:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


class RelayHandler(APIHandler):
    @property
    def lab(self) -> CarmeLab:
        return self.settings["carme_lab"]

    def answer(self, status: int, body: dict) -> None:
        if status == 0:
            status = 502
        self.set_status(status)
        self.finish(json.dumps(body))


class SessionHandler(RelayHandler):
    @web.authenticated
    async def get(self):
        lab = self.lab
        (s_status, sessions), (c_status, culler) = await asyncio.gather(
            lab.call(SESSIONS, "api/sessions"), lab.call(CULLER, "api/servers"))
        problems = [f"{name}: {doc.get('message') or status}" for name, status, doc in
                    ((SESSIONS, s_status, sessions), (CULLER, c_status, culler)) if status != 200]
        facts = session_facts(lab.server_name, sessions if s_status == 200 else None,
                              culler if c_status == 200 else None, time.time(), problems)
        self.finish(json.dumps(facts))


class ExtendHandler(RelayHandler):
    @web.authenticated
    async def post(self):
        body = self.get_json_body() or {}
        if not isinstance(body, dict) or set(body) - {"minutes"}:
            raise web.HTTPError(400, "the body is {\"minutes\": N}")
        path = f"api/sessions/{quote(self.lab.server_name, safe='')}/extend"
        self.answer(*await self.lab.call(SESSIONS, path, {"minutes": body.get("minutes")}))


class KeepRunningHandler(RelayHandler):
    @web.authenticated
    async def post(self):
        self.answer(*await self.lab.call(CULLER, "api/keep-running", {"server": self.lab.server_name}))


def load(serverapp) -> None:
    web_app = serverapp.web_app
    web_app.settings["carme_lab"] = CarmeLab(parent=serverapp)
    base = web_app.settings["base_url"].rstrip("/")
    web_app.add_handlers(".*$", [(f"{base}/carme/session", SessionHandler),
                                 (f"{base}/carme/extend", ExtendHandler),
                                 (f"{base}/carme/keep-running", KeepRunningHandler)])
    serverapp.log.info("carme_lab: the session's relay to the hub's services at %s",
                       web_app.settings["carme_lab"].services_url or "(unknown: $CARME_SERVICES_URL is not set)")
