"""Carme's one deployable JupyterHub config: everything a site sets lives in a YAML settings file.

    CARME_SETTINGS=/etc/carme/carme.yaml jupyterhub -f jupyterhub_config.py

The settings file (see carme.example.yaml) has a `carme:` section for Carme's own wiring and one
section per configurable class (JupyterHub, CarmeSpawner, Authenticator, ...) whose keys are that
class's traitlets, documented by `jupyterhub --help-all`. Environment variables override single
traitlets: CARME__CarmeSpawner__max_gpus=8 (values parsed as YAML). Unknown classes or settings
stop the hub with a message naming them: a setting nobody can find is a bug.
"""

import os
import pathlib

import yaml
from traitlets.config import Configurable

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

SETTINGS_ENV = "CARME_SETTINGS"
OVERRIDE_PREFIX = "CARME__"


def load_settings() -> dict:
    path = os.environ.get(SETTINGS_ENV) or str(pathlib.Path(__file__).with_name("carme.example.yaml"))
    with open(path) as f:
        settings = yaml.safe_load(f) or {}
    if not isinstance(settings, dict):
        raise SystemExit(f"{path}: the settings file must be a mapping of sections")
    for key, raw in os.environ.items():
        if key.startswith(OVERRIDE_PREFIX):
            parts = key[len(OVERRIDE_PREFIX):].split("__")
            if len(parts) != 2 or not all(parts):
                raise SystemExit(f"{key}: overrides are named CARME__<Class>__<setting>")
            settings.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(raw)
    settings["_source"] = path
    return settings


def configurable_classes() -> dict[str, type[Configurable]]:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator, DummyAuthenticator
    from jupyterhub.proxy import ConfigurableHTTPProxy
    from jupyterhub.spawner import Spawner

    from carme_auth import CarmeLDAPAuthenticator
    from carme_spawner import CarmeSpawner

    classes = [
        JupyterHub, Authenticator, DummyAuthenticator, CarmeLDAPAuthenticator, ConfigurableHTTPProxy, Spawner, CarmeSpawner,
    ]
    try:  # sites that offer Carme as one profile among others
        from wrapspawner import ProfilesSpawner, WrapSpawner

        classes += [WrapSpawner, ProfilesSpawner]
    except ImportError:
        pass
    return {cls.__name__: cls for cls in classes}


def apply_sections(settings: dict) -> None:
    classes = configurable_classes()
    for section, values in settings.items():
        if section in ("carme", "_source"):
            continue
        cls = classes.get(section)
        if cls is None:
            raise SystemExit(
                f"{settings['_source']}: unknown section {section!r}; known: carme, {', '.join(sorted(classes))}"
            )
        if not isinstance(values, dict):
            raise SystemExit(f"{settings['_source']}: section {section} must be a mapping of settings")
        known = set(cls.class_trait_names(config=True))
        for name, value in values.items():
            if name not in known:
                raise SystemExit(f"{settings['_source']}: {section} has no setting {name!r} (see jupyterhub --help-all)")
            c[section][name] = value


def apply_carme_section(carme: dict) -> None:
    state_dir = pathlib.Path(carme.get("state_dir", "/var/lib/carme"))
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)  # cookie secret, database and proxy pid live here
    c.JupyterHub.spawner_class = "carme"
    c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.db_url = carme.get("db_url", f"sqlite:///{state_dir / 'jupyterhub.sqlite'}")
    c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")
    # servers are SLURM jobs: a hub restart must re-attach to them, not stop them
    c.JupyterHub.cleanup_servers = False
    authenticator = carme.get("authenticator", "dummy")
    if authenticator == "dummy":
        # development and demo only: one shared password from the environment, never from a file
        c.JupyterHub.authenticator_class = "dummy"
        password = os.environ.get("CARME_DEMO_PASSWORD")
        if password:
            c.DummyAuthenticator.password = password
    elif authenticator == "ldap":
        # CarmeLDAPAuthenticator (section CarmeLDAPAuthenticator:); its auth_state (uid, gid, home,
        # role for the spawner) is encrypted with JUPYTERHUB_CRYPT_KEY
        c.JupyterHub.authenticator_class = "carme-ldap"
        if not os.environ.get("JUPYTERHUB_CRYPT_KEY"):
            c.CryptKeeper.keys = [crypt_key(state_dir / "jupyterhub_crypt_key")]
    else:
        raise SystemExit(f"carme.authenticator: unknown authenticator {authenticator!r}; known: dummy, ldap")


def crypt_key(path: pathlib.Path) -> str:
    """The hub's auth_state key from `path` (made on first use: 32 random bytes, hex, mode 0600)."""
    import secrets

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            raise SystemExit(f"{path}: the auth_state key must not be readable by group or others (chmod 0600)")
        key = path.read_text().strip()
        if len(key) != 64:
            raise SystemExit(f"{path}: expected 64 hex digits (the auth_state key); remove it to make a new one")
        return key
    with os.fdopen(fd, "w") as f:
        key = secrets.token_hex(32)
        f.write(key + "\n")
    return key


# ---- Carme's hub-managed services (carme_services/) --------------------------------------------
# Applied AFTER apply_sections: services, roles and custom scopes from the settings file or the
# environment are kept, Carme's are appended to them (never replacing them).

RECONCILE_KEYS = {"policy", "interval", "grace", "url"}


def hub_admins() -> set[str]:
    """The admin users named in the configuration (LDAP admins come as the hub group 'admin')."""
    return set(c.Authenticator.get("admin_users") or ()) | set(c.JupyterHub.get("admin_users") or ())


def add_service(where: str, spec: dict) -> None:
    """Add a managed service, refusing a second service of the same name."""
    services = list(c.JupyterHub.get("services") or [])
    if any(s.get("name") == spec["name"] for s in services):
        raise SystemExit(f"JupyterHub.services already names a service {spec['name']}: drop it or {where}")
    c.JupyterHub.services = services + [spec]


def optional_section(carme: dict, key: str, known: set[str]) -> dict | None:
    """`carme.<key>`: None when absent or false, {} when true, else its checked mapping."""
    section = carme.get(key)
    if section is None or section is False:
        return None
    if section is True:
        return {}
    if not isinstance(section, dict):
        raise SystemExit(f"carme.{key} must be a mapping of {', '.join(sorted(known))} (or true)")
    unknown = sorted(set(section) - known)
    if unknown:
        raise SystemExit(f"carme.{key} has no setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return section


def apply_services(carme: dict) -> None:
    """Add the reconcile service when the settings' `carme:` section has `reconcile:` (opt-in)."""
    where = "carme.reconcile"
    reconcile = optional_section(carme, "reconcile", RECONCILE_KEYS)
    if reconcile is None:
        return
    import sys

    from carme_services.reconcile import ADOPT_REFUSAL, POLICIES, READ_SCOPE
    from carme_spawner import CarmeSpawner

    policy = str(reconcile.get("policy", "report"))
    if policy == "adopt":
        raise SystemExit(f"{where}.policy: {ADOPT_REFUSAL}")
    if policy not in POLICIES:
        raise SystemExit(f"{where}.policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    try:
        interval, grace = float(reconcile.get("interval", 300)), float(reconcile.get("grace", 120))
    except (TypeError, ValueError):
        raise SystemExit(f"{where}.interval and .grace are numbers of seconds") from None
    if interval <= 0 or grace < 0:
        raise SystemExit(f"{where}.interval must be > 0 and {where}.grace >= 0")
    # the spawner's own prefix: the service must look for exactly the jobs the hub names
    prefix = c.CarmeSpawner.get("job_name_prefix") or CarmeSpawner.job_name_prefix.default_value
    name = "carme-reconcile"
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "SLURM_CONF") if k in os.environ}
    add_service(
        where,
        {
            "name": name,
            "url": str(reconcile.get("url", "http://127.0.0.1:10101")),
            "command": [
                sys.executable, "-m", "carme_services.reconcile", "--policy", policy,
                "--interval", f"{interval:g}", "--grace", f"{grace:g}", "--job-prefix", prefix,
            ],
            "environment": env,  # PATH: squeue and scancel; JupyterHub passes no PATH on its own
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [READ_SCOPE],
            "display": False,
        }
    )
    scopes = dict(c.JupyterHub.get("custom_scopes") or {})
    scopes[READ_SCOPE] = {"description": "Read Carme's reconcile report: orphan jobs, vanished servers."}
    c.JupyterHub.custom_scopes = scopes
    admins = hub_admins()
    c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles") or []) + [
        {
            "name": name,
            "description": "What carme-reconcile reads: every server and its state (the SLURM job id).",
            "services": [name],
            "scopes": ["list:users", "read:users", "read:servers", "admin:server_state"],
        },
        {
            "name": f"{name}-readers",
            "description": "May read carme-reconcile's report (the hub's admins).",
            "users": sorted(admins),
            "groups": ["admin"],  # admins by LDAP role (carme_auth puts them in the hub group 'admin')
            "scopes": [READ_SCOPE],
        },
    ]


CATALOG_KEYS = {"dir", "user_dir", "url", "user_image_schemes", "user_image_prefixes", "power_groups", "reload_interval"}


def apply_catalog(carme: dict) -> None:
    """The container catalog: the spawner reads it, the carme-catalog service serves and extends it."""
    where = "carme.catalog"
    catalog = optional_section(carme, "catalog", CATALOG_KEYS)
    if catalog is None:
        return
    import sys

    from carme_services.catalog import SERVICE_NAME, WRITE_SCOPE
    from container_catalog import EXAMPLE_CATALOG

    directory = str(catalog.get("dir") or EXAMPLE_CATALOG)
    user_dir = pathlib.Path(catalog.get("user_dir") or "/var/lib/carme/catalog-user")
    user_dir.mkdir(parents=True, exist_ok=True)
    interval = float(catalog.get("reload_interval", 5))
    c.CarmeSpawner.catalog_dir = directory
    c.CarmeSpawner.user_catalog_dir = str(user_dir)
    c.CarmeSpawner.catalog_reload_interval = interval
    power_groups = list(catalog.get("power_groups") or ["power"])
    command = [sys.executable, "-m", "carme_services.catalog", "--catalog-dir", directory, "--user-dir", str(user_dir),
               "--reload-interval", f"{interval:g}"]
    for scheme in catalog.get("user_image_schemes") or ["file"]:
        command += ["--scheme", str(scheme)]
    for prefix in catalog.get("user_image_prefixes") or []:
        command += ["--prefix", str(prefix)]
    for group in power_groups:
        command += ["--power-group", str(group)]
    add_service(
        where,
        {
            "name": SERVICE_NAME,
            "url": str(catalog.get("url", "http://127.0.0.1:10102")),
            "command": command,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [WRITE_SCOPE],
        }
    )
    scopes = dict(c.JupyterHub.get("custom_scopes") or {})
    scopes[WRITE_SCOPE] = {"description": "Add and disable user-defined images in Carme's container catalog."}
    c.JupyterHub.custom_scopes = scopes
    admins = hub_admins()
    roles = list(c.JupyterHub.get("load_roles") or [])
    # every user may use the catalog (the default 'user' role, extended)
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        user_role = {"name": "user", "scopes": ["self"]}
        roles.append(user_role)
    user_role["scopes"] = list(user_role.get("scopes") or ["self"]) + [f"access:services!service={SERVICE_NAME}"]
    roles.append(
        {
            "name": f"{SERVICE_NAME}-writers",
            "description": "Power users and admins may add their own images to the catalog.",
            "groups": sorted(set(power_groups) | {"admin"}),  # admins by LDAP role are in the hub group 'admin'
            "users": sorted(admins),
            "scopes": [WRITE_SCOPE],
        }
    )
    c.JupyterHub.load_roles = roles


settings = load_settings()
apply_carme_section(settings.get("carme") or {})
apply_sections(settings)
apply_services(settings.get("carme") or {})
apply_catalog(settings.get("carme") or {})
