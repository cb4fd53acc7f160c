"""The base of Carme's hub-managed services: one small traitlets Application each.

A service subclasses `CarmeService` (like jupyterhub-idle-culler, it is an Application run by the
hub) and gives three things: its settings (traitlets with `help=`, so
`python -m carme_services.<name> --help-all` documents every key), its periodic work
(`periodic_tasks`) and its web side (`web_handlers`). The base owns the rest:

- settings: the hub passes the service's section of the settings file as JSON in
  $CARME_SERVICE_CONFIG (see `carme_services.wiring`); command-line flags override it;
- logging in JupyterHub's format, listening where the hub proxies to ($JUPYTERHUB_SERVICE_URL);
- periodic tasks that never die of a bug, counted in `/metrics` (prometheus_client, scope
  `custom:carme-metrics:read`);
- stopping: SIGINT or SIGTERM (how the hub stops it) ends it within `stop_timeout`, even when it
  inherited SIGINT ignored;
- `HubClient`: the hub's REST API with the service's own token (paginated), and the hub's ONE
  view of SLURM (`GET /hub/api/carme/slurm/...`): services never ask SLURM themselves;
- `CarmeServiceHandler`: HubOAuth, JSON errors under `/api/`, scope checks through JupyterHub's
  own `check_scopes` (filtered scopes such as `...!user=dave` and `...!group=x` work), the
  caller's Carme role (`carme_core.roles`), and pages inside the hub's `page.html` with a
  working XSRF token (a form POST without it is refused by HubOAuth with 403).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlencode, urlparse

import jinja2
from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    check_scopes,
)
from jupyterhub.utils import url_path_join
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float, Unicode, default
from traitlets.config import Application, Config

from carme_core.announcements import current_html
from carme_core.roles import CarmeRoles, role_of_model

CONFIG_ENV = "CARME_SERVICE_CONFIG"
#: the file of carme-announcements' current notices (set by the wiring): every service page shows them
ANNOUNCEMENTS_ENV = "CARME_ANNOUNCEMENTS_FILE"
METRICS_SCOPE = "custom:carme-metrics:read"
PAGINATION = "application/jupyterhub-pagination+json"
LOG_FORMAT = "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"
#: how the hub stops a managed service: SIGINT, then SIGTERM after Spawner.interrupt_timeout (30 s)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def hub_template_dir() -> Path:
    """Where JupyterHub's own templates (page.html) are installed."""
    from jupyterhub._data import DATA_FILES_PATH

    return Path(DATA_FILES_PATH) / "templates"


@dataclass(frozen=True)
class PeriodicTask:
    """`run` every `interval` seconds, the first time after `delay`."""

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]
    delay: float = 0.0


class HubClient:
    """The hub's REST API with this service's own token."""

    def __init__(self, api_url: str, token: str, timeout: float = 60):
        self.api_url, self.token, self.timeout = api_url.rstrip("/"), token, timeout

    async def get(self, path: str, accept: str = "application/json", **query):
        url = f"{self.api_url}/{path.lstrip('/')}" + (f"?{urlencode(query)}" if query else "")
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(url, headers={"Authorization": f"token {self.token}", "Accept": accept},
                        request_timeout=self.timeout)
        )
        return json.loads(response.body)

    async def delete(self, path: str) -> None:
        """DELETE `path` (e.g. a server: users/U/servers/S); HTTPClientError on a refusal."""
        await AsyncHTTPClient().fetch(
            HTTPRequest(f"{self.api_url}/{path.lstrip('/')}", method="DELETE", request_timeout=self.timeout,
                        headers={"Authorization": f"token {self.token}"})
        )

    async def post(self, path: str, body: dict) -> tuple[int, dict | None]:
        """POST `body` as JSON to `path` (e.g. start a server: users/U/servers/S); (status, its JSON
        or None); HTTPClientError on a refusal (its response carries the hub's message)."""
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(f"{self.api_url}/{path.lstrip('/')}", method="POST", body=json.dumps(body),
                        request_timeout=self.timeout,
                        headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        )
        return response.code, json.loads(response.body) if response.body else None

    async def metrics(self) -> str:
        """The hub's own Prometheus text (/hub/metrics: the scope read:metrics)."""
        url = self.api_url.rsplit("/api", 1)[0] + "/metrics"
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(url, headers={"Authorization": f"token {self.token}"}, request_timeout=self.timeout))
        return response.body.decode()

    async def get_all(self, path: str, limit: int = 200, **query) -> list:
        """Every item of a paginated list (e.g. `users`), page by page."""
        items, offset = [], 0
        while True:
            page = await self.get(path, accept=PAGINATION, offset=offset, limit=limit, **query)
            items.extend(page["items"])
            following = page["_pagination"]["next"]
            if not following:
                return items
            offset = following["offset"]

    async def slurm(self, kind: str) -> dict:
        """The hub's view of SLURM: `jobs`, `nodes`, `reservations` or `usage`, with the snapshot's health."""
        return await self.get(f"carme/slurm/{kind}")


class CarmeService(Application):
    """The base Application of a Carme service (subclasses set name, description and the parts)."""

    name = "carme-service"
    template_dir: Path | None = None  # a service's own templates (they extend the hub's page.html)

    url = Unicode(
        config=True,
        help="Where this service listens (the hub proxies /services/<name>/ to it). "
        "Default: $JUPYTERHUB_SERVICE_URL, which the hub sets from the service's `url`.",
    )

    @default("url")
    def _url_default(self):
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10100")

    hub_api_url = Unicode(
        config=True, help="The hub's REST API. Default: $JUPYTERHUB_API_URL, set by the hub for its services."
    )

    @default("hub_api_url")
    def _hub_api_url_default(self):
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    service_prefix = Unicode(
        config=True, help="The URL prefix the hub routes to this service. Default: $JUPYTERHUB_SERVICE_PREFIX."
    )

    @default("service_prefix")
    def _service_prefix_default(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.name}/")

    stop_timeout = Float(
        3.0, config=True,
        help="Seconds a service has to exit after the hub's SIGINT or SIGTERM; work still running in its "
        "worker threads then (a file system check, a database call) is left behind.",
    )

    @default("log_level")
    def _log_level_default(self):
        return logging.INFO

    @default("log_format")
    def _log_format_default(self):
        return LOG_FORMAT

    @default("log_datefmt")
    def _log_datefmt_default(self):
        return "%Y-%m-%d %H:%M:%S"

    aliases = {"log-level": "Application.log_level", "url": "CarmeService.url"}

    # ---- the parts a service gives ---------------------------------------------------------------
    def web_handlers(self) -> list[tuple[str, type, dict]]:
        """(path below the service prefix, handler class, initialize kwargs) of the web side."""
        return []

    def periodic_tasks(self) -> list[PeriodicTask]:
        return []

    # ---- settings ------------------------------------------------------------------------------------
    def initialize(self, argv=None):
        """Settings from $CARME_SERVICE_CONFIG (the hub's wiring), then the command line on top."""
        raw = os.environ.get(CONFIG_ENV)
        if raw:
            self.update_config(Config(json.loads(raw)))
        self.parse_command_line(argv)

    @property
    def hub_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"

    @property
    def power_groups(self) -> tuple[str, ...]:
        return tuple(CarmeRoles(parent=self).power_groups)

    def hub_client(self) -> HubClient:
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not token:
            raise SystemExit(f"{self.name}: JUPYTERHUB_API_TOKEN is not set (run it as a hub service)")
        return HubClient(self.hub_api_url, token)

    # ---- running ---------------------------------------------------------------------------------------
    def make_web_app(self) -> web.Application:
        dirs = [str(d) for d in (self.template_dir, hub_template_dir()) if d is not None]
        jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs), autoescape=True)
        routes = [
            (url_path_join(self.service_prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(self.service_prefix, "metrics"), MetricsHandler, {}),
        ]
        routes += [(url_path_join(self.service_prefix, path), handler, kwargs)
                   for path, handler, kwargs in self.web_handlers()]
        return web.Application(routes, cookie_secret=secrets.token_bytes(32), carme_service=self, jinja=jinja)

    def start(self):
        """Serve until the hub stops the service (SIGINT or SIGTERM), then exit within `stop_timeout`.

        The signals are handled on the event loop, whatever this process inherited: JupyterHub starts
        its services before it sets its own handlers, so a hub started with SIGINT ignored (a background
        job of a script: `jupyterhub &`) passes that on, and the service would sit out the hub's
        interrupt_timeout (30 s). Worker threads (`asyncio.to_thread`) still busy at the deadline are
        left behind: the interpreter would otherwise wait for them at exit.
        """
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=f"{self.name}-worker"))
        try:
            stopped_by = loop.run_until_complete(self._serve_until_stopped())
        except KeyboardInterrupt:  # a second SIGINT while stopping
            stopped_by = signal.SIGINT
        finally:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()  # its worker threads are told to end, not waited for
        self.log.info("%s stopped (%s)", self.name, stopped_by.name if stopped_by else "its work ended")

    async def _serve_until_stopped(self) -> signal.Signals | None:
        """`run()` until a stop signal cancels it; the signal (None: run() ended by itself)."""
        loop = asyncio.get_running_loop()
        serving = asyncio.current_task()
        stopped_by: list[signal.Signals] = []

        def stop(sig: signal.Signals) -> None:
            if not stopped_by:
                stopped_by.append(sig)
                self._exit_by_deadline(time.monotonic() + self.stop_timeout)
                serving.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        try:
            await self.run()
        except asyncio.CancelledError:
            if not stopped_by:
                raise
        finally:
            for sig in STOP_SIGNALS:  # a second signal acts at once (KeyboardInterrupt, or termination)
                loop.remove_signal_handler(sig)
        return stopped_by[0] if stopped_by else None

    def _exit_by_deadline(self, deadline: float) -> None:
        """A watchdog: should the process still run at `deadline` (a worker thread blocked on a slow
        file system or a database, which the interpreter waits for at exit), name what is still busy
        and exit without it."""

        def exit_at_deadline():
            time.sleep(max(0.0, deadline - time.monotonic()))
            busy = [t.name for t in threading.enumerate()
                    if t.is_alive() and not t.daemon and t is not threading.main_thread()]
            self.log.warning("%s: exiting without waiting for %s (still busy %g s after the stop signal)",
                             self.name, ", ".join(busy) or "its clean-up", self.stop_timeout)
            for handler in logging.getLogger().handlers + self.log.handlers:
                handler.flush()
            os._exit(0)

        threading.Thread(target=exit_at_deadline, name=f"{self.name}-exit-watchdog", daemon=True).start()

    async def run(self) -> None:
        url = urlparse(self.url)
        self.make_web_app().listen(url.port or 80, url.hostname or "127.0.0.1")
        self.log.info("%s serving %s on %s", self.name, self.service_prefix, url.netloc)
        tasks = [asyncio.create_task(self._every(task), name=task.name) for task in self.periodic_tasks()]
        await asyncio.gather(*tasks) if tasks else await asyncio.Event().wait()

    async def _every(self, task: PeriodicTask) -> None:
        await asyncio.sleep(task.delay)
        while True:
            began = time.monotonic()
            try:
                await task.run()
                self.metrics.task_runs.labels(task.name, "ok").inc()
                self.metrics.task_last_success.labels(task.name).set(time.time())
            except Exception:  # a bug must not end the service
                self.metrics.task_runs.labels(task.name, "error").inc()
                self.log.exception("%s: task %s failed", self.name, task.name)
            await asyncio.sleep(max(0.0, task.interval - (time.monotonic() - began)))

    @cached_property
    def metrics(self) -> ServiceMetrics:
        return ServiceMetrics(self.name)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on `loop` and let it finish (as asyncio.run does before closing)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class ServiceMetrics:
    """The service's own Prometheus registry: the base's task counters, plus whatever it adds."""

    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        self.task_runs = Counter("carme_service_task_runs", "Runs of the service's periodic tasks",
                                 ["task", "outcome"], registry=self.registry)
        self.task_last_success = Gauge("carme_service_task_last_success_seconds",
                                       "When each periodic task last succeeded (epoch s)", ["task"],
                                       registry=self.registry)
        info = Gauge("carme_service_info", "This Carme service", ["service"], registry=self.registry)
        info.labels(service).set(1)


class CarmeServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Base handler: OAuth through the hub, JSON errors under /api/, hub-styled pages."""

    @property
    def service(self) -> CarmeService:
        return self.settings["carme_service"]

    @property
    def log(self):
        return self.service.log

    @property
    def username(self) -> str:
        return (self.current_user or {}).get("name", "")

    @property
    def role(self) -> str:
        return role_of_model(self.current_user or {}, self.service.power_groups)

    def has_scope(self, scope: str, user: str | None = None) -> bool:
        """Does the caller hold `scope` (for the resources of `user`, when given)? JupyterHub's own
        check_scopes decides, so `scope!user=NAME` and `scope!group=G` grants work as in the hub."""
        model = self.current_user or {}
        required = {scope}
        if user is not None:
            required = {f"{scope}!user={user}"}
            if user == model.get("name"):  # the caller's groups are known: group-filtered grants count
                required |= {f"{scope}!group={g}" for g in model.get("groups") or ()}
        return bool(check_scopes(required, set(model.get("scopes") or ())))

    def require(self, allowed: bool, message: str) -> None:
        if not allowed:
            raise web.HTTPError(403, message)

    def is_api(self) -> bool:
        return self.request.path.startswith(url_path_join(self.service.service_prefix, "api"))

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body

    def write_json(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if self.is_api():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": message}))
        else:
            self.finish(self.render_page("error.html", status_code=status_code, message=message))

    def render_page(self, template: str, **context) -> str:
        user = self.current_user or {}
        hub_prefix = self.service.hub_prefix
        page_user = {"name": user.get("name", ""), "json_escaped_name": json.dumps(user.get("name", ""))[1:-1]}
        return self.settings["jinja"].get_template(template).render(
            base_url=hub_prefix,
            prefix=hub_prefix.rsplit("hub/", 1)[0],
            static_url=lambda path, include_version=True: url_path_join(hub_prefix, "static", path),
            logo_url=hub_prefix,
            login_url=url_path_join(hub_prefix, "login"),
            logout_url=url_path_join(hub_prefix, "logout"),
            user=page_user,
            no_spawner_check=True,
            parsed_scopes=set(),
            services=[],
            xsrf_token=self.xsrf_token.decode("ascii"),  # HubOAuth's token: forms post it as _xsrf
            version_hash="",
            announcement=current_html(os.environ.get(ANNOUNCEMENTS_ENV)),  # the hub's notices (carme-announcements)
            service_prefix=self.service.service_prefix,
            role=self.role,
            **context,
        )


class MetricsHandler(CarmeServiceHandler):
    """Prometheus metrics of this service, for holders of custom:carme-metrics:read."""

    hub_scopes = {METRICS_SCOPE}

    @web.authenticated
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.service.metrics.registry))
