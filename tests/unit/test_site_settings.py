"""jupyterhub_config.py: one settings file drives the hub; bad settings stop it with their name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from traitlets.config import Config, PyFileConfigLoader

REPO = Path(__file__).resolve().parents[2]


def load(monkeypatch, tmp_path, settings: str | None = None, **env) -> Config:
    if settings is not None:
        path = tmp_path / "carme.yaml"
        path.write_text(settings)
        monkeypatch.setenv("CARME_SETTINGS", str(path))
    else:
        monkeypatch.setenv("CARME_SETTINGS", str(REPO / "carme.example.yaml"))
        monkeypatch.setenv(
            "CARME__carme__catalog", json.dumps({"user_dir": str(tmp_path / "catalog-user"), "url": "http://127.0.0.1:1"})
        )
    monkeypatch.setenv("CARME__carme__state_dir", str(tmp_path / "state"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loader = PyFileConfigLoader("jupyterhub_config.py", path=str(REPO))
    return loader.load_config()


def test_the_example_settings_load(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path)
    assert c.JupyterHub.spawner_class == "carme"
    assert c.JupyterHub.cleanup_servers is False
    assert c.CarmeSpawner.partitions[0]["name"] == "interactive"
    assert any(s["name"] == "carme-catalog" for s in c.JupyterHub.services)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_environment_overrides_one_setting(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, CARME__CarmeSpawner__max_gpus="8")
    assert c.CarmeSpawner.max_gpus == 8


@pytest.mark.parametrize(
    "settings, words",
    [
        ("NoSuchSpawner:\n  x: 1\n", "unknown section 'NoSuchSpawner'"),
        ("CarmeSpawner:\n  max_gpu: 3\n", "CarmeSpawner has no setting 'max_gpu'"),
        ("carme:\n  authenticator: kerberos\n", "unknown authenticator 'kerberos'"),
        ("carme:\n  catalog: {colour: red}\n", "carme.catalog has no setting 'colour'"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_settings_stop_the_hub_naming_them(monkeypatch, tmp_path, settings, words):
    with pytest.raises(SystemExit) as e:
        load(monkeypatch, tmp_path, settings)
    assert words in str(e.value)


def test_bad_override_name(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="CARME__<Class>__<setting>"):
        load(monkeypatch, tmp_path, CARME__CarmeSpawner="1")
