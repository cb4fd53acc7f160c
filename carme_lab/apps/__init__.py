"""The session's web apps (TensorBoard, code-server, the site's own) behind the server's hub login.

The image's interfaces come from the catalog through $CARME_INTERFACES (JSON, set by
CarmeSpawner: [{"name", "title"[, "command"]}], JupyterLab itself not listed). Each one becomes a
jupyter-server-proxy server at `<server URL><name>/` with a JupyterLab launcher entry, so it is
reached only through the single-user server, i.e. with the user's hub login (its OAuth cookie or
token); a request without it gets the server's login redirect, another user a 403.

Every app listens on a unix socket `<dir>/<name>.sock`, where `<dir>` is made for this server
with mode 0700 (mkdtemp): no TCP port that other users of a shared node could connect to
(jupyter-server-proxy issue 358), and no other user can reach the socket either. An app whose
command does not take `{unix_socket}` is refused (the catalog refuses it already).

jupyter-server-proxy reads `ServerProxy.servers` when it loads; this module adds the session's
apps to that setting when the server links its extensions (before any is loaded), so the order of
loading does not matter. Servers the site configured itself under the same name win.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Float, List, Unicode, default
from traitlets.config import Configurable

ENV_NAME = "CARME_INTERFACES"  # == container_catalog.web_apps.ENV_NAME
SOCKET_FIELD = "{unix_socket}"
ICONS = Path(__file__).parent / "icons"


@dataclass(frozen=True)
class App:
    """One web app of the session: its name (URL path), launcher title, command (argv with
    {unix_socket}), icon and how long it may take to answer the first time."""

    name: str
    title: str
    command: tuple[str, ...]
    icon: str = ""
    timeout: float = 60.0
    environment: dict = field(default_factory=dict)


class CarmeApps(Configurable):
    """How the session runs its web apps (section `CarmeApps` of the single-user server's config)."""

    socket_root = Unicode(config=True, help="Where the private (0700) directory of the apps' unix sockets is made "
                          "(default: $XDG_RUNTIME_DIR when it is the user's own 0700 directory, else the temp dir).")
    tensorboard_logdir = Unicode(config=True, help="TensorBoard's --logdir (default: $CARME_TENSORBOARD_LOGDIR, "
                                 "else the home directory).")
    code_server_command = List(Unicode(), config=True, help="code-server's program and its fixed arguments; Carme "
                               "adds --config (next to the socket), --socket, --socket-mode 600, --auth none (the "
                               "server's hub login is in front) and the folder to open (the home directory).")
    start_timeout = Float(60.0, config=True, help="Seconds an app may take to answer after its start.")
    launcher_category = Unicode("Web apps", config=True, help="The JupyterLab launcher's section of the apps "
                                "(JupyterLab draws the apps' icons only in its Notebook and Console sections).")

    @default("socket_root")
    def _default_socket_root(self):
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        return runtime if runtime and private_directory(runtime) else tempfile.gettempdir()

    @default("tensorboard_logdir")
    def _default_logdir(self):
        return os.environ.get("CARME_TENSORBOARD_LOGDIR") or os.path.expanduser("~")

    @default("code_server_command")
    def _default_code_server(self):
        return ["code-server", "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust"]

    def builtin(self, name: str, title: str) -> App | None:
        """The built-in app `name` (None: not one Carme knows)."""
        if name == "tensorboard":
            command = (sys.executable, "-m", "carme_lab.apps.tensorboard_socket", "--socket", SOCKET_FIELD,
                       "--logdir", self.tensorboard_logdir)
            return App(name, title, command, str(ICONS / "tensorboard.svg"), self.start_timeout)
        if name == "code-server":
            # its config file next to the socket: code-server writes a default one with a generated
            # password where there is none, and none of its settings (bind-addr, auth, cert) apply here
            command = (*self.code_server_command, "--config", SOCKET_FIELD + ".yaml", "--socket", SOCKET_FIELD,
                       "--socket-mode", "600", "--auth", "none", os.path.expanduser("~"))
            return App(name, title, command, str(ICONS / "code-server.svg"), self.start_timeout)
        return None


BUILTIN_APPS = ("tensorboard", "code-server")  # == container_catalog.web_apps.BUILTIN_INTERFACES but jupyterlab


def apps_from_env(value: str, settings: CarmeApps) -> tuple[list[App], list[str]]:
    """The apps of $CARME_INTERFACES and the problems (an entry that cannot run, in words)."""
    if not value.strip():
        return [], []
    try:
        items = json.loads(value)
    except ValueError as e:
        return [], [f"${ENV_NAME} is not JSON ({e}): no web apps"]
    if not isinstance(items, list):
        return [], [f"${ENV_NAME} must be a JSON list: no web apps"]
    apps, problems = [], []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"${ENV_NAME}: an entry without a name: {str(item)[:80]}")
            continue
        title = str(item.get("title") or name)
        command = item.get("command")
        if command is None:
            app = settings.builtin(name, title)
            if app is None:
                problems.append(f"{name}: not a built-in app and no command given")
                continue
        elif not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            problems.append(f"{name}: its command must be a list of strings")
            continue
        elif not any("{unix_socket}" in a for a in command):
            problems.append(f"{name}: its command does not take {{unix_socket}}; an app on a TCP port could be "
                            "reached by other users of the node, so it is refused")
            continue
        else:
            app = App(name, title, tuple(command), timeout=settings.start_timeout)
        apps.append(app)
    return apps, problems


def proxy_servers(apps: list[App], socket_dir: str, category: str = "Web apps") -> dict:
    """jupyter-server-proxy's `ServerProxy.servers` entries for `apps`, each on `<socket_dir>/<name>.sock`."""
    servers = {}
    for app in apps:
        servers[app.name] = {
            "command": list(app.command),
            "unix_socket": os.path.join(socket_dir, f"{app.name}.sock"),
            "timeout": app.timeout,
            "environment": dict(app.environment),
            "new_browser_tab": True,
            "absolute_url": False,
            "launcher_entry": {"enabled": True, "title": app.title, "icon_path": app.icon, "category": category},
        }
    return servers


def private_directory(path: str) -> bool:
    """Is `path` a directory (not a link) of this user with mode 0700 (nobody else may enter)?"""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700


def make_socket_dir(root: str) -> str:
    """A new directory for this server's sockets: mode 0700, this user's, removed when the server exits."""
    path = tempfile.mkdtemp(prefix="carme-apps-", dir=root)  # mode 0700, a fresh name: no one else's
    os.chmod(path, 0o700)
    if not private_directory(path):
        raise RuntimeError(f"{path} is not a private (0700) directory of this user")
    atexit.register(shutil.rmtree, path, True)
    return path


def _link_jupyter_server_extension(serverapp) -> None:
    """Add the session's apps to ServerProxy.servers (before jupyter-server-proxy loads and reads it)."""
    settings = CarmeApps(parent=serverapp)
    apps, problems = apps_from_env(os.environ.get(ENV_NAME, ""), settings)
    for problem in problems:
        serverapp.log.warning("Carme web apps: %s", problem)
    if not apps:
        return
    if importlib.util.find_spec("jupyter_server_proxy") is None:  # its extension serves the apps
        serverapp.log.warning("Carme web apps: jupyter-server-proxy is not installed: %s not offered",
                              ", ".join(a.name for a in apps))
        return
    socket_dir = make_socket_dir(settings.socket_root)
    configured = serverapp.config.ServerProxy.get("servers") or {}
    servers = {**proxy_servers(apps, socket_dir, settings.launcher_category), **configured}
    serverapp.config.ServerProxy.servers = servers
    serverapp.log.info("Carme web apps: %s on unix sockets in %s", ", ".join(a.name for a in apps), socket_dir)


def _load_jupyter_server_extension(serverapp) -> None:
    """Nothing to load: jupyter-server-proxy serves what the link step configured."""
