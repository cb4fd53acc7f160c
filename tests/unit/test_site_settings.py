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
    monkeypatch.setenv("CARME_DEMO_PASSWORD", "a test password")
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
        ("CarmeSpawner:\n  start_gate_dir:\n", "CarmeSpawner.start_gate_dir: The 'start_gate_dir' trait of a CarmeSpawner instance"),
        ("CarmeSpawner:\n  max_gpus: many\n", "CarmeSpawner.max_gpus: The 'max_gpus' trait of a CarmeSpawner instance"),
    ],
)
def test_bad_settings_stop_the_hub_naming_them(monkeypatch, tmp_path, settings, words):
    with pytest.raises(SystemExit) as e:
        load(monkeypatch, tmp_path, settings)
    assert words in str(e.value)


def test_dummy_mode_refuses_to_start_without_a_password(monkeypatch, tmp_path):
    """Issue 16, finding 1: without a password the dummy authenticator lets anyone in, root too."""
    dummy = "carme:\n  authenticator: dummy\n"
    with pytest.raises(SystemExit, match="CARME_DEMO_PASSWORD is empty"):
        load(monkeypatch, tmp_path, dummy, CARME_DEMO_PASSWORD="")
    c = load(monkeypatch, tmp_path, dummy)
    assert c.DummyAuthenticator.password == "a test password"


def test_settings_are_taken_as_traitlets_takes_them(monkeypatch, tmp_path):
    # a lone string for a set or list (JupyterHub takes it), a command as a string, an int for a float
    c = load(monkeypatch, tmp_path, CARME__Authenticator__admin_users="alice", CARME__Spawner__env_keep="PATH",
             CARME__CarmeSpawner__start_gate_wait="10", CARME__CarmeSpawner__cmd="jupyterhub-singleuser")
    assert c.Authenticator.admin_users == "alice" and c.CarmeSpawner.start_gate_wait == 10
    with pytest.raises(SystemExit, match="CarmeSpawner.denied_users: The 'denied_users' trait of a CarmeSpawner"):
        load(monkeypatch, tmp_path, CARME__CarmeSpawner__denied_users="[1, 2]")  # the elements are checked too


def test_an_empty_override_is_the_empty_string(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, CARME__CarmeSpawner__start_gate_dir="")
    assert c.CarmeSpawner.start_gate_dir == ""  # the gate off, not YAML's null (which no spawner could take)


def test_bad_override_name(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="CARME__<Class>__<setting>"):
        load(monkeypatch, tmp_path, CARME__CarmeSpawner="1")


# ---- services wire themselves (issue 15, acceptance 1) -----------------------------------------------

EVERY_SERVICE = """
carme:
  state_dir: {state}
  reconcile: {{policy: cancel, interval: 60, grace: 30, url: "http://127.0.0.1:10201"}}
  catalog: {{user_dir: {state}/catalog-user, url: "http://127.0.0.1:10202", user_image_prefixes: [/opt/images/]}}
  reservations: {{url: "http://127.0.0.1:10204", approval_roles: [user]}}
  quota: {{url: "http://127.0.0.1:10203"}}
  scratch: {{url: "http://127.0.0.1:10206", node_dir: "/ssd/{{node}}", grace: 60}}
Authenticator:
  admin_users: [admin]
CarmeRoles:
  power_groups: [power, gpu-users]
CarmeQuota:
  account: lab
  role_limits: {{user: {{max_servers: 1}}}}
"""


def test_every_service_declares_its_own_wiring(monkeypatch, tmp_path):
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="carme.services")}
    assert installed == {"reconcile", "catalog", "quota", "reservations", "scratch", "culler", "sessions", "ssh", "cockpit", "announcements"}
    c = load(monkeypatch, tmp_path, EVERY_SERVICE.format(state=tmp_path / "state"))
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"carme-reconcile", "carme-catalog", "carme-quota", "carme-reservations", "carme-scratch"}
    # the scratch service hands its layout to the spawner (the batch script binds what the prolog makes)
    assert c.CarmeSpawner.scratch["node_dir"] == "/ssd/{node}" and "grace" not in c.CarmeSpawner.scratch

    reconcile = services["carme-reconcile"]
    assert reconcile["url"] == "http://127.0.0.1:10201" and reconcile["display"] is False
    assert reconcile["command"][1:] == ["-m", "carme_services.reconcile"]
    config = json.loads(reconcile["environment"]["CARME_SERVICE_CONFIG"])
    assert config["ReconcileService"] == {"policy": "cancel", "interval": 60, "grace": 30, "url": "http://127.0.0.1:10201"}
    assert config["CarmeRoles"] == {"power_groups": ["power", "gpu-users"]}
    assert "PATH" in reconcile["environment"]  # squeue-free, but scancel needs a PATH
    assert "custom:carme-reconcile:read" in reconcile["oauth_client_allowed_scopes"]

    catalog = services["carme-catalog"]
    assert catalog["display"] is True and catalog["command"][1:] == ["-m", "carme_services.catalog"]
    assert c.CarmeSpawner.user_catalog_dir == str(tmp_path / "state" / "catalog-user")  # the spawner reads it too

    quota = json.loads(services["carme-quota"]["environment"]["CARME_SERVICE_CONFIG"])
    store = f"sqlite:///{tmp_path / 'state'}/carme-quota.sqlite"  # the default: in the hub's state_dir
    assert quota["QuotaService"] == {"url": "http://127.0.0.1:10203", "db_url": store}
    assert quota["CarmeQuota"] == {"account": "lab", "role_limits": {"user": {"max_servers": 1}},  # the hub's policy
                                   "db_url": store}
    assert c.CarmeQuota.db_url == store  # the hub's admission reads the same store
    # a service listed before quota reads the same store: the services' hub settings come first
    reservations = json.loads(services["carme-reservations"]["environment"]["CARME_SERVICE_CONFIG"])
    assert reservations["CarmeQuota"]["db_url"] == store
    assert reservations["ReservationService"] == {"url": "http://127.0.0.1:10204", "approval_roles": ["user"],
                                                  "db_url": f"sqlite:///{tmp_path / 'state'}/carme-reservations.sqlite"}

    scopes = set(c.JupyterHub.custom_scopes)
    assert scopes == {"custom:carme-reconcile:read", "custom:carme-catalog:write", "custom:carme-slurm:read",
                      "custom:carme-metrics:read", "custom:carme-quota:read", "custom:carme-quota:admin",
                      "custom:carme-reservations:read", "custom:carme-reservations:book",
                      "custom:carme-reservations:admin", "custom:carme-scratch:read", "custom:carme-scratch:admin"}
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["carme-reconcile"]["services"] == ["carme-reconcile"]
    assert "custom:carme-slurm:read" in roles["carme-reconcile"]["scopes"]  # it reads the hub's SLURM view
    assert roles["carme-catalog-writers"]["groups"] == ["admin", "gpu-users", "power"]
    assert roles["carme-catalog-writers"]["users"] == ["admin"]
    assert roles["carme-slurm-readers"]["scopes"] == ["custom:carme-slurm:read"]
    assert "access:services!service=carme-catalog" in roles["user"]["scopes"]
    assert "custom:carme-quota:read!user" in roles["user"]["scopes"]  # everyone reads their own quota
    assert "custom:carme-reservations:book!user" in roles["user"]["scopes"]  # and books for themselves


@pytest.mark.parametrize(
    "settings, words",
    [
        ("carme:\n  janitor: {}\n", "carme has no setting 'janitor'"),
        ("carme:\n  reconcile: {policy: adopt}\n", "adopt is not supported"),
        ("carme:\n  reconcile: {interval: 0}\n", "interval must be > 0"),
        ("carme:\n  reconcile: {interval: soon}\n", "carme.reconcile"),
        ("carme:\n  reconcile: [report]\n", "carme.reconcile must be a mapping"),
    ],
)
def test_bad_service_settings_stop_the_hub_naming_them(monkeypatch, tmp_path, settings, words):
    with pytest.raises(SystemExit) as e:
        load(monkeypatch, tmp_path, settings)
    assert words in str(e.value)


def test_the_config_is_a_loop_that_knows_no_service():
    text = (REPO / "jupyterhub_config.py").read_text()
    assert len(text.splitlines()) <= 200
    assert "carme_services.reconcile" not in text and "carme_services.catalog" not in text
    assert "custom:" not in text  # no scope of any service


@pytest.mark.parametrize("mounts, message", [
    ('[{source: data, target: /data}]', r"CarmeSpawner.mounts\[0\].source"),
    ('[{source: /beegfs/../etc, target: /data}]', r"CarmeSpawner.mounts\[0\].source: .*'\.\.'"),
    ('[{source: /beegfs/data, target: /usr}]', r"CarmeSpawner.mounts\[0\].target: must not be /usr"),
])
def test_bad_mount_settings_stop_the_hub_naming_the_key(monkeypatch, tmp_path, mounts, message):
    """Issue 20 acceptance 6: the hub does not start (not: each spawn fails later)."""
    with pytest.raises(SystemExit, match=message):
        load(monkeypatch, tmp_path, CARME__CarmeSpawner__mounts=mounts)


def test_with_announcements_enabled_every_services_pages_read_their_file(monkeypatch, tmp_path):
    from carme_services.base import ANNOUNCEMENTS_ENV

    c = load(monkeypatch, tmp_path, EVERY_SERVICE.format(state=tmp_path / "state"))
    assert all(ANNOUNCEMENTS_ENV not in s["environment"] for s in c.JupyterHub.services)  # not enabled: none
    with_notices = EVERY_SERVICE.format(state=tmp_path / "state").replace(
        "carme:\n", 'carme:\n  announcements: {url: "http://127.0.0.1:10211"}\n', 1)
    c = load(monkeypatch, tmp_path, with_notices)
    files = {s["name"]: s["environment"].get(ANNOUNCEMENTS_ENV) for s in c.JupyterHub.services}
    assert set(files.values()) == {str(tmp_path / "state" / "carme-announcements.json")}, files
    assert "carme-quota" in files and "carme-announcements" in files


def test_a_service_page_shows_the_current_notices_escaped(tmp_path):
    import time

    from carme_core.announcements import current_html, write_notices

    path = tmp_path / "carme-announcements.json"
    now = time.time()
    write_notices(path, [{"id": 1, "severity": "warning", "text": "carme-n2 <drained> Friday", "start": now - 60,
                          "expiry": now + 3600, "by": "carol"}])
    shown = current_html(str(path))
    assert "carme-n2 &lt;drained&gt; Friday" in shown and 'data-severity="warning"' in shown
    assert current_html(None) == "" and current_html(str(tmp_path / "missing.json")) == ""
