"""The web interfaces an image offers (pure): the catalog's `interfaces` field, checked.

    interfaces: [jupyterlab, tensorboard, code-server]     # built-in interfaces by name
    interfaces:                                            # a site-defined web app (site entries only)
      - jupyterlab
      - name: streamlit
        title: Streamlit demo
        command: [streamlit, run, /opt/demo/app.py, --server.address, "unix://{unix_socket}"]

JupyterLab is always one of them (it is the session's server) and always first. Every other one
runs inside the session's JupyterLab through jupyter-server-proxy, at `<server URL><name>/`, behind
the server's own hub login, and listens on a unix socket in a private (0700) directory: its
command must take the socket's path (`{unix_socket}`). An app that can only listen on a TCP port
is refused: any user of a shared node could reach that port (jupyter-server-proxy issue 358).

The job learns its image's interfaces from $CARME_INTERFACES (:func:`interfaces_env`, JSON); the
single-user side (`carme_lab.apps`) knows how to start the built-in ones.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any

from .fields import FieldError, describe, text

JUPYTERLAB = "jupyterlab"
#: name -> title of the interfaces Carme knows how to start (carme_lab.apps.BUILTIN_APPS has their commands)
BUILTIN_INTERFACES = {
    JUPYTERLAB: "JupyterLab",
    "tensorboard": "TensorBoard",
    "code-server": "VS Code (code-server)",
}
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
APP_NAME_RULE = "lowercase letters, digits and '-', starting with a letter, 1-31 characters"
#: first path segments of the single-user server (Jupyter Server, JupyterLab, jupyter-server-proxy,
#: Carme's lab extension): an app named so would shadow them
RESERVED_NAMES = frozenset({
    "api", "apps", "carme", "doc", "edit", "files", "hub", "kernelspecs", "lab", "login", "logout", "lsp",
    "metrics", "nbconvert", "notebooks", "proxy", "server-proxy", "static", "terminals", "tree", "user", "view",
    "voila",
})
SOCKET_FIELD = "unix_socket"
ALLOWED_FIELDS = ("unix_socket", "base_url")  # jupyter-server-proxy fills these in a command
APP_KEYS = ("name", "title", "command")
MAX_INTERFACES = 8
MAX_TITLE = 60
MAX_COMMAND_ARGS = 64
MAX_ARG = 1000
ENV_NAME = "CARME_INTERFACES"  # the job's list of its image's interfaces (JSON)


@dataclass(frozen=True)
class WebInterface:
    """One web interface of an image: a built-in one (no command: Carme knows it) or a site-defined
    web app with its command (argv with `{unix_socket}`)."""

    name: str
    title: str
    command: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        return not self.command

    def to_data(self) -> str | dict:
        """As in the catalog file: the name of a built-in interface, a mapping for a site app."""
        if self.builtin:
            return self.name
        return {"name": self.name, "title": self.title, "command": list(self.command)}


DEFAULT_INTERFACES = (WebInterface(JUPYTERLAB, BUILTIN_INTERFACES[JUPYTERLAB]),)


def interfaces(value: Any, field: str = "interfaces", *, site: bool = True) -> tuple[WebInterface, ...]:
    """The `interfaces` field: a list of built-in names and (site entries only) web app mappings;
    JupyterLab first (added when missing), none twice."""
    if not isinstance(value, list) or not value:
        raise FieldError(field, f"must be a non-empty list of interfaces such as [jupyterlab, tensorboard],"
                                f" got {describe(value)}")
    if len(value) > MAX_INTERFACES:
        raise FieldError(field, f"at most {MAX_INTERFACES} interfaces, got {len(value)}")
    result: dict[str, WebInterface] = {}
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, str):
            if item not in BUILTIN_INTERFACES:
                raise FieldError(where, f"unknown interface {describe(item)}; built in: {', '.join(BUILTIN_INTERFACES)}"
                                        " (a site-defined web app is a mapping with name, title and command)")
            one = WebInterface(item, BUILTIN_INTERFACES[item])
        elif isinstance(item, dict):
            if not site:
                raise FieldError(where, "a web app with its own command is set by the site catalog only: a"
                                        " user-defined entry runs in other users' jobs; name a built-in interface"
                                        f" ({', '.join(BUILTIN_INTERFACES)})")
            one = web_app(item, where)
        else:
            raise FieldError(where, f"must be an interface name or a web app mapping, got {describe(item)}")
        if one.name in result:
            raise FieldError(where, f"{one.name} is listed twice")
        result[one.name] = one
    lab = result.pop(JUPYTERLAB, DEFAULT_INTERFACES[0])
    return (lab, *result.values())


def web_app(value: dict, field: str) -> WebInterface:
    """A site-defined web app: {name, title, command}; the command listens on `{unix_socket}`."""
    unknown = [k for k in value if k not in APP_KEYS]
    if unknown:
        raise FieldError(f"{field}.{unknown[0]}" if isinstance(unknown[0], str) and unknown[0].isprintable()
                         else field, f"unknown key; a web app has {', '.join(APP_KEYS)}")
    name = value.get("name")
    if not isinstance(name, str) or not APP_NAME.fullmatch(name):
        raise FieldError(f"{field}.name", f"must be {APP_NAME_RULE}; got {describe(name)}")
    if name in BUILTIN_INTERFACES:
        raise FieldError(f"{field}.name", f"{name} is a built-in interface: list it by name, without a command")
    if name in RESERVED_NAMES:
        raise FieldError(f"{field}.name", f"{name} is a path of the single-user server (it would shadow it);"
                                          " choose another name")
    title = text(value.get("title", name), f"{field}.title", MAX_TITLE, required=True)
    return WebInterface(name, title, command(value.get("command"), f"{field}.command"))


def command(value: Any, field: str) -> tuple[str, ...]:
    """argv (no shell) that serves the app on the unix socket `{unix_socket}`."""
    if not isinstance(value, list) or not value:
        raise FieldError(field, f"must be a non-empty list of arguments (argv, no shell), got {describe(value)}")
    if len(value) > MAX_COMMAND_ARGS:
        raise FieldError(field, f"at most {MAX_COMMAND_ARGS} arguments, got {len(value)}")
    names = set()
    for i, arg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(arg, str) or not arg or len(arg) > MAX_ARG or not arg.isprintable():
            raise FieldError(where, f"must be printable text of 1-{MAX_ARG} characters, got {describe(arg)}")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(arg) if f is not None}
        except ValueError:
            raise FieldError(where, "has an unmatched '{' or '}' (write a literal brace as '{{' or '}}')") from None
        if "port" in fields:
            raise FieldError(where, "{port} makes the app listen on a TCP port, which any user of the node could"
                                    " reach; Carme runs web apps on unix sockets only: use {unix_socket}")
        bad = sorted(f for f in fields if f not in ALLOWED_FIELDS)
        if bad:
            raise FieldError(where, f"unknown placeholder {{{bad[0]}}}; allowed: "
                                    + ", ".join(f"{{{f}}}" for f in ALLOWED_FIELDS))
        names |= fields
    if SOCKET_FIELD not in names:
        raise FieldError(field, "must contain {unix_socket}, the path of the unix socket the app listens on"
                                " (in a private directory); an app that cannot listen on a unix socket is refused")
    return tuple(value)


def interfaces_env(items: tuple[WebInterface, ...]) -> str:
    """$CARME_INTERFACES: the image's interfaces after JupyterLab, as JSON
    [{"name", "title"[, "command"]}] (the site's catalog wrote them; no secret)."""
    data = []
    for one in items:
        if one.name == JUPYTERLAB:
            continue
        entry: dict[str, Any] = {"name": one.name, "title": one.title}
        if one.command:
            entry["command"] = list(one.command)
        data.append(entry)
    return json.dumps(data, separators=(",", ":"))


def session_env(items: tuple[WebInterface, ...], open_first: str) -> dict[str, str]:
    """The job's variables for its web interfaces: $CARME_INTERFACES, and the server's default URL
    (JUPYTERHUB_DEFAULT_URL) when another interface than JupyterLab opens first."""
    env = {ENV_NAME: interfaces_env(items)}
    if open_first != JUPYTERLAB:
        env["JUPYTERHUB_DEFAULT_URL"] = "/" + app_path(open_first)
    return env


def app_path(name: str) -> str:
    """Where interface `name` opens, relative to the server's URL: "lab" or "<name>/"."""
    return "lab" if name == JUPYTERLAB else f"{name}/"
