"""How a service declares its own hub wiring: the pure pieces every `hub_service(settings)` uses.

`jupyterhub_config.py` knows no service. For each key under `carme:` that names an installed
service (entry point group `carme.services`), it builds `ServiceSettings` and calls that
service's `hub_service(settings)`, which returns a `HubWiring` dict:

    {"service":       the JupyterHub service spec (name, url, command, environment, oauth, display),
     "custom_scopes": {scope: {"description": ...}},
     "roles":         [JupyterHub roles: the service's own, and who may use its scopes],
     "user_scopes":   [scopes added to the hub's default 'user' role],
     "server_scopes": [scopes added to each session's own token, $JUPYTERHUB_API_TOKEN (the lab extension's)],
     "template_vars": {page variable: callable(user) -> str}: JupyterHub.template_vars, after the site's own,
     "config":        {Class: {setting: value}} for the hub's own classes (e.g. CarmeSpawner)}

`apply_wiring(c, wiring)` merges one such dict into the hub's config `c`.

The service's settings reach its process as JSON in $CARME_SERVICE_CONFIG: the same traitlets
that `--help-all` documents, checked once by the traitlets themselves (`checked_settings` runs
them when the hub starts, so a bad value stops the hub with the setting's name).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from traitlets import TraitError
from traitlets.config import Config

from carme_core.roles import ADMIN, POWER
from carme_slurm.view import VIEW_SCOPE

from .base import ANNOUNCEMENTS_ENV, CONFIG_ENV, METRICS_SCOPE

#: variables of the hub's environment every service gets (JupyterHub passes none on its own)
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "SLURM_CONF")


@dataclass(frozen=True)
class ServiceSettings:
    """What a service's wiring is built from (all of it read by jupyterhub_config from the settings)."""

    key: str  # the key under carme:, e.g. "reconcile"
    values: Mapping  # the service's own settings (carme.<key>), not yet checked
    admin_users: tuple[str, ...] = ()
    power_groups: tuple[str, ...] = (POWER,)
    environment: Mapping[str, str] = field(default_factory=dict)  # the hub's PATH, LANG, ...
    python: str = sys.executable
    quota: Mapping = field(default_factory=dict)  # the hub's CarmeQuota section: one quota policy for all
    state_dir: str = "/var/lib/carme"  # carme.state_dir: where a service keeps its default database
    announcements_file: str = ""  # carme-announcements' file of current notices, when it is enabled
    service_urls: Mapping[str, str] = field(default_factory=dict)  # the enabled services' URLs, by name


def checked_settings(cls, settings: ServiceSettings) -> tuple[dict, object]:
    """The service's settings and the service built from them, if `cls` accepts them; ValueError
    naming the section and setting otherwise."""
    where = f"carme.{settings.key}"
    values = settings.values
    if values is True or values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where} must be a mapping of settings (or true); see python -m {cls.__module__} --help-all")
    known = set(cls.class_trait_names(config=True))
    for name in values:
        if name not in known:
            raise ValueError(f"{where} has no setting {name!r}; see python -m {cls.__module__} --help-all")
    try:
        app = cls(config=Config({cls.__name__: dict(values)}))
    except TraitError as e:
        raise ValueError(f"{where}: {e}") from None
    for name in values:  # traits validate lazily: read each one
        try:
            getattr(app, name)
        except TraitError as e:
            raise ValueError(f"{where}.{name}: {e}") from None
    return dict(values), app


def service_spec(cls, settings: ServiceSettings, values: dict, *, url: str, allowed_scopes: list[str],
                 display: bool) -> dict:
    """The JupyterHub service entry that runs `cls` as `python -m <its module>` with these settings."""
    config = {cls.__name__: values, "CarmeRoles": {"power_groups": list(settings.power_groups)},
              "CarmeQuota": dict(settings.quota)}
    environment = {k: v for k, v in settings.environment.items() if k in PASSED_ENV}
    environment[CONFIG_ENV] = json.dumps(config)
    if settings.announcements_file:  # its pages show the hub's notices too
        environment[ANNOUNCEMENTS_ENV] = settings.announcements_file
    return {
        "name": cls.name,
        "url": url,
        "command": [settings.python, "-m", cls.__module__],
        "environment": environment,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": sorted({*allowed_scopes, METRICS_SCOPE}),
        "display": display,
    }


def own_role(name: str, scopes: list[str], description: str, reads_slurm: bool = True) -> dict:
    """The role of the service's own token (with the hub's SLURM view unless `reads_slurm` is False)."""
    return {"name": name, "description": description, "services": [name],
            "scopes": sorted({*scopes, VIEW_SCOPE} if reads_slurm else set(scopes))}


def admins_role(name: str, settings: ServiceSettings, scopes: list[str], description: str,
                groups: tuple[str, ...] = ()) -> dict:
    """A role giving `scopes` to the hub's admins (by name and by the hub group 'admin') and `groups`."""
    return {
        "name": name,
        "description": description,
        "users": sorted(settings.admin_users),
        "groups": sorted({ADMIN, *groups}),  # LDAP admins are in the hub group named after their role
        "scopes": list(scopes),
    }


def platform_wiring(settings: ServiceSettings) -> dict:
    """What every service shares: the metrics scope, given to the hub's admins."""
    return {
        "custom_scopes": {METRICS_SCOPE: {"description": "Read the Prometheus metrics of Carme's services."}},
        "roles": [admins_role("carme-metrics-readers", settings, [METRICS_SCOPE],
                              "May read the /metrics of Carme's services (the hub's admins).")],
    }


class JoinedTemplateVar:
    """Two `JupyterHub.template_vars` values of one name (strings, or callables taking the user) shown one after
    the other: a site's own `announcement` stays when a service adds its notices."""

    def __init__(self, *parts):
        self.parts = parts

    def __call__(self, user=None) -> str:
        texts = [part(user) if callable(part) else part for part in self.parts]
        return "".join(str(t) for t in texts if t)


def joined_template_var(site, ours):
    return ours if site in (None, "") else JoinedTemplateVar(site, ours)


def apply_wiring(c, wiring: dict) -> None:
    """Merge one part's declared wiring (see this module's docstring) into the hub's config `c`."""
    spec = wiring.get("service")
    if spec:
        services = list(c.JupyterHub.get("services") or [])
        if any(s.get("name") == spec["name"] for s in services):
            raise SystemExit(f"JupyterHub.services already names a service {spec['name']}: drop it there")
        c.JupyterHub.services = services + [spec]
    c.JupyterHub.custom_scopes = {**(c.JupyterHub.get("custom_scopes") or {}), **wiring.get("custom_scopes", {})}
    roles = list(c.JupyterHub.get("load_roles") or []) + list(wiring.get("roles", []))
    if wiring.get("user_scopes"):
        user_role = next((r for r in roles if r.get("name") == "user"), None)
        if user_role is None:
            user_role = {"name": "user", "scopes": ["self"]}
            roles.append(user_role)
        user_role["scopes"] = list(user_role.get("scopes") or ["self"]) + list(wiring["user_scopes"])
    c.JupyterHub.load_roles = roles
    if wiring.get("server_scopes"):  # the session's own $JUPYTERHUB_API_TOKEN: the hub's 'server' role, and these
        scopes = c.Spawner.get("server_token_scopes") or ["users:activity!user", "access:servers!server"]
        c.Spawner.server_token_scopes = list(scopes) + list(wiring["server_scopes"])
    if wiring.get("template_vars"):
        names = dict(c.JupyterHub.get("template_vars") or {})
        for name, value in wiring["template_vars"].items():
            names[name] = joined_template_var(names.get(name), value)
        c.JupyterHub.template_vars = names
    for section, values in wiring.get("config", {}).items():
        for name, value in values.items():
            c[section][name] = value
