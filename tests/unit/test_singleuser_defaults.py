"""The single-user environment's site defaults (issue 21): the JupyterLab settings that would call out
(news, update checks, the extension manager) are off, and every key is one the installed JupyterLab
knows, with a value its schema allows (a typo would silently leave the default on)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupyterlab
from jupyterlab.handlers.announcements import NeverCheckForUpdate

HERE = Path(__file__).resolve().parents[2] / "dev" / "singleuser"
SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"


def test_the_overrides_turn_off_news_update_checks_and_the_extension_manager():
    overrides = json.loads((HERE / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"checkForUpdates": False, "fetchNews": "false"}
    assert overrides["@jupyterlab/extensionmanager-extension:plugin"] == {"enabled": False}
    for plugin, values in overrides.items():
        package, _, name = plugin.partition(":")
        schema = json.loads((SCHEMAS / package / f"{name}.json").read_text())
        for key, value in values.items():
            spec = schema["properties"][key]
            choices = spec.get("enum") or [c["const"] for c in spec.get("oneOf", [])]
            if choices:
                assert value in choices, (plugin, key, value)
            else:
                assert spec["type"] == "boolean" and isinstance(value, bool), (plugin, key, spec)


def test_the_server_fetches_no_news_and_checks_no_updates():
    config = json.loads((HERE / "carme-offline.json").read_text())["LabApp"]
    assert config["news_url"] is None
    module, _, name = config["check_for_updates_class"].rpartition(".")
    assert module == "jupyterlab" and getattr(jupyterlab, name) is NeverCheckForUpdate
