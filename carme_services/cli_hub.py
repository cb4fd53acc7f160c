"""`carme hub --settings FILE [JUPYTERHUB OPTION...]`: start JupyterHub with Carme's installed config.

The installed package's `carme_hub/config.py` is the config file (`jupyterhub -f` it), and the
settings file reaches it as $CARME_SETTINGS, the same as `make demo` does with the repository's
jupyterhub_config.py. This process becomes the hub (exec): signals and the exit status are the
hub's. Options after the settings (e.g. `--debug`) go to JupyterHub as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

SETTINGS_ENV = "CARME_SETTINGS"  # what carme_hub.config reads


def config_file() -> str:
    """The path of the installed carme_hub/config.py (found, not imported: it configures a hub when loaded)."""
    spec = importlib.util.find_spec("carme_hub.config")
    if spec is None or not spec.origin:
        raise SystemExit("carme hub: carme_hub.config is not installed (pip install carme)")
    return spec.origin


def hub_argv(settings: str, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the command, its environment) that starts the hub with `settings`."""
    path = os.path.abspath(settings)
    if not os.path.isfile(path):
        raise SystemExit(f"carme hub: --settings {settings}: no such file")
    if not os.access(path, os.R_OK):
        raise SystemExit(f"carme hub: --settings {settings}: not readable by this user")
    env = {**os.environ, SETTINGS_ENV: path}
    return [sys.executable, "-m", "jupyterhub", "-f", config_file(), *extra], env


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="carme hub", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=os.environ.get(SETTINGS_ENV, ""),
                        help=f"the site's settings file, e.g. /etc/carme/carme.yaml (default: ${SETTINGS_ENV})")
    parser.add_argument("--show-config", action="store_true", help="print the config file JupyterHub is given, and exit")
    options, extra = parser.parse_known_args(argv)
    if options.show_config:
        print(config_file())
        return
    if not options.settings:
        raise SystemExit(f"carme hub: give --settings FILE (or set {SETTINGS_ENV}); see carme.example.yaml")
    command, env = hub_argv(options.settings, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
