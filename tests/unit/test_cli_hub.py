"""Issue 23: `carme hub --settings FILE` starts JupyterHub with the installed package's config file
(carme_hub/config.py), which configures a hub when JupyterHub loads it and stays importable as a module."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from traitlets.config import PyFileConfigLoader

import carme_hub.config
from carme_services import cli, cli_hub

REPO = Path(__file__).resolve().parents[2]
SETTINGS = """
carme:
  state_dir: {state}
  authenticator: dummy
  announcements: {{url: "http://127.0.0.1:20611", max_duration_days: 3}}
Authenticator:
  admin_users: [carol]
"""


def test_the_config_file_is_the_installed_packages_module():
    assert cli_hub.config_file() == carme_hub.config.__file__
    assert Path(cli_hub.config_file()).name == "config.py"


def test_the_command_gives_jupyterhub_the_config_and_the_settings_file(tmp_path, monkeypatch):
    settings = tmp_path / "carme.yaml"
    settings.write_text("carme: {}\n")
    monkeypatch.chdir(tmp_path)
    command, env = cli_hub.hub_argv("carme.yaml", ["--debug"])
    assert command == [sys.executable, "-m", "jupyterhub", "-f", cli_hub.config_file(), "--debug"]
    assert env["CARME_SETTINGS"] == str(settings) and env["PATH"] == os.environ["PATH"]
    with pytest.raises(SystemExit, match="--settings nope.yaml: no such file"):
        cli_hub.hub_argv("nope.yaml", [])


def test_carme_hub_execs_the_hub(tmp_path, monkeypatch, capsys):
    settings = tmp_path / "carme.yaml"
    settings.write_text("carme: {}\n")
    ran = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: ran.append((path, argv, env)))
    monkeypatch.delenv("CARME_SETTINGS", raising=False)
    cli.main(["hub", "--settings", str(settings), "--port", "20600"])
    [(path, argv, env)] = ran
    assert path == sys.executable and argv[-2:] == ["--port", "20600"] and env["CARME_SETTINGS"] == str(settings)
    with pytest.raises(SystemExit, match="give --settings FILE"):
        cli.main(["hub"])
    cli.main(["hub", "--show-config"])
    assert capsys.readouterr().out.strip() == cli_hub.config_file()


def load_config_file(monkeypatch, tmp_path, path: Path, settings: str | None):
    monkeypatch.setenv("CARME_DEMO_PASSWORD", "a test password")
    if settings is None:
        monkeypatch.delenv("CARME_SETTINGS", raising=False)
    else:
        (tmp_path / "carme.yaml").write_text(settings)
        monkeypatch.setenv("CARME_SETTINGS", str(tmp_path / "carme.yaml"))
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def test_the_installed_config_configures_a_hub_with_announcements_on_its_pages(monkeypatch, tmp_path):
    c = load_config_file(monkeypatch, tmp_path, Path(cli_hub.config_file()),
                         SETTINGS.format(state=tmp_path / "state"))
    assert c.JupyterHub.spawner_class == "carme" and c.JupyterHub.authenticator_class == "dummy"
    [service] = [s for s in c.JupyterHub.services if s["name"] == "carme-announcements"]
    assert service["url"] == "http://127.0.0.1:20611"
    config = json.loads(service["environment"]["CARME_SERVICE_CONFIG"])["AnnouncementsService"]
    assert config["current_file"] == str(tmp_path / "state" / "carme-announcements.json")
    assert "custom:carme-announcements:admin" in c.JupyterHub.custom_scopes
    names = c.JupyterHub.template_vars
    assert set(names) == {"announcement", "announcement_spawn", "announcement_home"}
    assert names["announcement"](object()) == ""  # no file yet
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert "access:services!service=carme-announcements" in user_role["scopes"]


def test_the_installed_config_without_a_settings_file_stops_naming_the_variable(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match=r"no settings file: set \$CARME_SETTINGS"):
        load_config_file(monkeypatch, tmp_path, Path(cli_hub.config_file()), None)


def test_the_repositorys_config_is_the_same_hub_with_the_example_settings_as_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CARME__carme__state_dir", str(tmp_path / "state"))
    monkeypatch.setenv("CARME__carme__catalog", json.dumps({"user_dir": str(tmp_path / "u"), "url": "http://127.0.0.1:1"}))
    c = load_config_file(monkeypatch, tmp_path, REPO / "jupyterhub_config.py", None)
    assert c.JupyterHub.spawner_class == "carme"
    assert c.CarmeSpawner.partitions[0]["name"] == "interactive"  # carme.example.yaml
    text = (REPO / "jupyterhub_config.py").read_text()
    assert "from carme_hub.config import configure" in text and len(text.splitlines()) < 30
    assert len(Path(carme_hub.config.__file__).read_text().splitlines()) < 200
