"""Carme's JupyterHub config, for the repository (`make demo`, the tests):

    CARME_SETTINGS=/etc/carme/carme.yaml jupyterhub -f jupyterhub_config.py

Its body is the installed package's `carme_hub/config.py`, which `carme hub --settings
FILE` gives JupyterHub as its config file: the settings file's format and checks are documented
there. Without $CARME_SETTINGS this file reads carme.example.yaml next to it.
"""

import pathlib

from carme_hub.config import configure

configure(get_config(), str(pathlib.Path(__file__).with_name("carme.example.yaml")))  # noqa: F821  (JupyterHub's)
