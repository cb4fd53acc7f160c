"""The small shared base of Carme's hub-managed services.

- `ServiceEnvironment`: what JupyterHub hands a managed service (prefix, URL, API, token).
- `CarmeServiceHandler`: HubOAuth-authenticated handlers with JSON errors for `/api/` paths,
  the caller's Carme role, scope checks, and pages rendered inside the hub's own `page.html`
  (Bootstrap 5), so a service looks like the hub.
- `make_app()`: a tornado application with the OAuth callback wired.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import jinja2
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

ROLES = ("user", "power", "admin")


def hub_template_dir() -> Path:
    """Where JupyterHub's own templates (page.html) are installed."""
    from jupyterhub._data import DATA_FILES_PATH

    return Path(DATA_FILES_PATH) / "templates"


@dataclass(frozen=True)
class ServiceEnvironment:
    name: str
    prefix: str  # e.g. /services/carme-catalog/
    url: str  # where this service listens, e.g. http://127.0.0.1:10102
    hub_prefix: str  # e.g. /hub/

    @classmethod
    def from_env(cls) -> ServiceEnvironment:
        name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "")
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{name}/")
        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10100")
        hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
        return cls(name=name, prefix=prefix, url=url, hub_prefix=hub_prefix)

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 80

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"


def role_of(user: dict, power_groups: tuple[str, ...]) -> str:
    """The caller's Carme role from the hub's user model: admin, power (by group) or user."""
    if user.get("admin"):
        return "admin"
    if set(user.get("groups") or ()) & set(power_groups):
        return "power"
    return "user"


class CarmeServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Base handler: OAuth through the hub, JSON errors under /api/, hub-styled pages."""

    @property
    def env(self) -> ServiceEnvironment:
        return self.settings["carme_env"]

    @property
    def role(self) -> str:
        return role_of(self.current_user or {}, self.settings["power_groups"])

    def has_scope(self, scope: str) -> bool:
        return scope in set((self.current_user or {}).get("scopes") or ())

    def require(self, allowed: bool, message: str) -> None:
        if not allowed:
            raise web.HTTPError(403, message)

    def is_api(self) -> bool:
        return self.request.path.startswith(url_path_join(self.env.prefix, "api"))

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
        hub_prefix = self.env.hub_prefix
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
            xsrf_token="",
            version_hash="",
            announcement="",
            service_prefix=self.env.prefix,
            role=self.role,
            **context,
        )


def make_app(
    env: ServiceEnvironment,
    handlers: list,
    template_dir: Path,
    power_groups: tuple[str, ...] = ("power",),
    **settings,
) -> web.Application:
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(template_dir)), jinja2.FileSystemLoader(str(hub_template_dir()))]
    )
    jinja = jinja2.Environment(loader=loader, autoescape=True)
    routes = [(url_path_join(env.prefix, "oauth_callback"), HubOAuthCallbackHandler)]
    routes += [(url_path_join(env.prefix, path), handler, kwargs) for path, handler, kwargs in handlers]
    return web.Application(
        routes,
        cookie_secret=secrets.token_bytes(32),
        carme_env=env,
        power_groups=tuple(power_groups),
        jinja=jinja,
        **settings,
    )
