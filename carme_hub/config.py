"""Carme's one deployable JupyterHub config: everything a site sets lives in a YAML settings file.

    carme hub --settings /etc/carme/carme.yaml            (the installed package: this file is its config)
    CARME_SETTINGS=/etc/carme/carme.yaml jupyterhub -f jupyterhub_config.py   (the repository: `make demo`)

The repository's jupyterhub_config.py calls `configure(get_config())`. The settings file (see
carme.example.yaml) has a `carme:` section for Carme's own wiring and one section per configurable
class (JupyterHub, CarmeSpawner, SlurmView, CarmeRoles, CarmeQuota, ...) whose keys are that class's traitlets, documented by `jupyterhub --help-all`. Under `carme:`, a key naming
an installed service (entry point group `carme.services`) enables it; its keys are the service's
traitlets (`python -m carme_services.<name> --help-all`), and the service declares its own hub
wiring (`hub_service(settings)`): this file knows no service. Environment variables override
single settings: CARME__CarmeSpawner__max_gpus=8 (values parsed as YAML; empty is the empty string,
`~` is null). Unknown classes,
services or settings stop the hub with a message naming them: a setting nobody can find is a bug.
"""


import os
import pathlib
from importlib.metadata import entry_points

import yaml

from carme_hub.setting_types import check_type
from carme_hub.tls import CarmeTLS, apply_tls

SETTINGS_ENV = "CARME_SETTINGS"
OVERRIDE_PREFIX = "CARME__"
CARME_KEYS = {"state_dir": "cookie secret, database, proxy pid", "db_url": "the hub's database",
              "authenticator": "dummy or ldap", "hub_db_write_ahead": "true (default): the hub's SQLite database "
              "commits without waiting for the disk (write-ahead log; a local disk only)"}


def load_settings(default: str | None = None) -> dict:
    path = os.environ.get(SETTINGS_ENV) or default
    if not path:
        raise SystemExit(f"no settings file: set ${SETTINGS_ENV} (carme hub --settings FILE)")
    with open(path) as f:
        settings = yaml.safe_load(f) or {}
    if not isinstance(settings, dict):
        raise SystemExit(f"{path}: the settings file must be a mapping of sections")
    for key, raw in os.environ.items():
        if key.startswith(OVERRIDE_PREFIX):
            parts = key[len(OVERRIDE_PREFIX):].split("__")
            if len(parts) != 2 or not all(parts):
                raise SystemExit(f"{key}: overrides are named CARME__<Class>__<setting>")
            # an empty value is the empty string (CARME__CarmeSpawner__start_gate_dir= turns the gate off), not YAML's null
            settings.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(raw) if raw.strip() else ""
    settings["_source"] = path
    return settings


def configurable_classes() -> dict:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator, DummyAuthenticator
    from jupyterhub.proxy import ConfigurableHTTPProxy
    from jupyterhub.spawner import Spawner

    from carme_auth import CarmeLDAPAuthenticator
    from carme_core.roles import CarmeRoles
    from carme_quota.settings import CarmeQuota
    from carme_slurm import SlurmView
    from carme_spawner import CarmeSpawner

    classes = [JupyterHub, Authenticator, DummyAuthenticator, CarmeLDAPAuthenticator, ConfigurableHTTPProxy, Spawner,
               CarmeSpawner, SlurmView, CarmeRoles, CarmeQuota, CarmeTLS]
    try:  # sites that offer Carme as one profile among others
        from wrapspawner import ProfilesSpawner, WrapSpawner

        classes += [WrapSpawner, ProfilesSpawner]
    except ImportError:
        pass
    return {cls.__name__: cls for cls in classes}


def apply_sections(c, settings: dict) -> None:
    classes = configurable_classes()
    for section, values in settings.items():
        if section in ("carme", "_source"):
            continue
        cls = classes.get(section)
        if cls is None:
            raise SystemExit(f"{settings['_source']}: unknown section {section!r}; "
                             f"known: carme, {', '.join(sorted(classes))}")
        if not isinstance(values, dict):
            raise SystemExit(f"{settings['_source']}: section {section} must be a mapping of settings")
        traits = cls.class_traits(config=True)
        for name, value in values.items():
            if name not in traits:
                raise SystemExit(f"{settings['_source']}: {section} has no setting {name!r} (see jupyterhub --help-all)")
            check_type(section, name, traits[name], f"{settings['_source']}: {section}.{name}", value)
            c[section][name] = value


def installed_services() -> dict:
    """The services Carme can wire: {key under carme: -> entry point of its hub_service}."""
    return {ep.name: ep for ep in entry_points(group="carme.services")}


def check_carme_keys(carme: dict) -> None:
    services = installed_services()
    for key in carme:
        if key not in CARME_KEYS and key not in services:
            raise SystemExit(f"carme has no setting {key!r}; settings: {', '.join(sorted(CARME_KEYS))}; "
                             f"services: {', '.join(sorted(services))}")


def apply_carme_section(c, carme: dict) -> None:
    state_dir = pathlib.Path(carme.get("state_dir", "/var/lib/carme"))
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)  # cookie secret, database and proxy pid live here
    c.JupyterHub.spawner_class = "carme"
    c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.db_url = carme.get("db_url", f"sqlite:///{state_dir / 'jupyterhub.sqlite'}")
    if carme.get("hub_db_write_ahead", True):
        from carme_core.db import sqlite_write_ahead

        sqlite_write_ahead(c.JupyterHub.db_url)  # every spawn waits for the hub's commits
    c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")
    # servers are SLURM jobs: a hub restart must re-attach to them, not stop them
    c.JupyterHub.cleanup_servers = False
    authenticator = carme.get("authenticator", "dummy")
    if authenticator == "dummy":
        # development and demo only: one shared password from the environment, never from a file
        c.JupyterHub.authenticator_class = "dummy"
        password = os.environ.get("CARME_DEMO_PASSWORD")
        if not password:  # without one, JupyterHub's dummy authenticator lets anyone in as anyone
            raise SystemExit("carme.authenticator is dummy but $CARME_DEMO_PASSWORD is empty: set a password")
        c.DummyAuthenticator.password = password
    elif authenticator == "ldap":
        # CarmeLDAPAuthenticator: its auth_state (the spawner's uid, gid, home) is encrypted (JUPYTERHUB_CRYPT_KEY)
        c.JupyterHub.authenticator_class = "carme-ldap"
        if not os.environ.get("JUPYTERHUB_CRYPT_KEY"):
            from carme_auth.crypt_key import crypt_key

            c.CryptKeeper.keys = [crypt_key(state_dir / "jupyterhub_crypt_key")]
    else:
        raise SystemExit(f"carme.authenticator: unknown authenticator {authenticator!r}; known: dummy, ldap")


# ---- wiring: the SLURM view's API and each enabled service's hub_service, AFTER apply_sections (Carme's appended)


def apply_services(c, settings: dict) -> None:
    from carme_core.announcements import default_path
    from carme_core.roles import CarmeRoles
    from carme_services.wiring import PASSED_ENV, ServiceSettings, apply_wiring, platform_wiring
    from carme_slurm import hub_api

    carme = settings.get("carme") or {}
    admins = set(c.Authenticator.get("admin_users") or ()) | set(c.JupyterHub.get("admin_users") or ())
    apply_wiring(c, hub_api.hub_wiring(admins))
    services = installed_services()
    enabled = [key for key in carme if key in services and carme[key] not in (None, False)]
    common = dict(
        admin_users=tuple(sorted(admins)),
        power_groups=tuple(CarmeRoles(config=c).power_groups),
        state_dir=str(carme.get("state_dir", "/var/lib/carme")),
        environment={k: os.environ[k] for k in PASSED_ENV if k in os.environ},
    )
    if "announcements" in enabled:  # every service's pages show the current notices (carme_core.announcements)
        own = carme["announcements"] if isinstance(carme["announcements"], dict) else {}
        common["announcements_file"] = str(own.get("current_file") or default_path(common["state_dir"]))

    def wiring(key: str) -> dict:  # pure: from the hub's settings as they stand (CarmeQuota included)
        try:
            return services[key].load()(ServiceSettings(key=key, values=carme[key], quota=dict(c.CarmeQuota.items()),
                                                        **common))
        except ValueError as e:
            raise SystemExit(f"{settings['_source']}: {e}") from None

    # where each enabled service answers (the cockpit reads the culler's samples): from their own wiring
    common["service_urls"] = {w["service"]["name"]: w["service"]["url"] for w in map(wiring, enabled)
                              if w.get("service")}
    if enabled:
        apply_wiring(c, platform_wiring(ServiceSettings(key="carme", values={}, **common)))
    for key in enabled:  # first what services set in the hub's classes (CarmeQuota.db_url), which others read
        apply_wiring(c, {"config": wiring(key).get("config", {})})
    for key in enabled:
        apply_wiring(c, wiring(key))
    from carme_spawner.settings import check_at_hub_start  # mounts and scratch: a bad one stops the hub now

    check_at_hub_start(dict(c.CarmeSpawner.items()), settings["_source"])


def configure(c, default_settings: str | None = None) -> dict:
    """Configure the hub's `c` from the settings file ($CARME_SETTINGS, else `default_settings`); the settings."""
    settings = load_settings(default_settings)
    check_carme_keys(settings.get("carme") or {})
    apply_carme_section(c, settings.get("carme") or {})
    apply_sections(c, settings)
    apply_tls(c)  # CarmeTLS -> the proxy's cert and key, Secure cookies, HSTS (carme_hub/tls.py)
    apply_services(c, settings)
    return settings


if "get_config" in globals():  # loaded by JupyterHub as its config file: `carme hub`, `jupyterhub -f <this file>`
    configure(globals()["get_config"]())  # JupyterHub puts get_config into a config file's namespace
