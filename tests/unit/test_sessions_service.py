"""carme-sessions (issue 21): its hub wiring, the cards and history it assembles from the hub and
the view, Relaunch and Stop through the hub's API (its answers relayed), and the page's template."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jinja2
import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse, HTTPRequest
from traitlets.config import Config

from carme_services.base import hub_template_dir
from carme_services.sessions.errors import SessionError
from carme_services.sessions.history import Choice
from carme_services.sessions.service import ADMIN_SCOPE, READ_SCOPE, SessionsService, hub_service
from carme_services.wiring import ServiceSettings

from .sessions_samples import NOW, accounted, job, server_model, user_model

GPU = {"image": "pytorch-gpu", "gpus": 1, "gpu_type": "a100", "runtime": 30}


def test_the_wiring_declares_scopes_roles_and_the_store():
    wiring = hub_service(ServiceSettings("sessions", {"ending_soon_minutes": 5}, admin_users=("admin",),
                                         state_dir="/var/lib/carme"))
    service = wiring["service"]
    assert service["name"] == "carme-sessions" and service["url"] == "http://127.0.0.1:10108" and service["display"]
    assert service["command"][1:] == ["-m", "carme_services.sessions.service"]
    config = json.loads(service["environment"]["CARME_SERVICE_CONFIG"])
    assert config["SessionsService"] == {"ending_soon_minutes": 5, "db_url": "sqlite:////var/lib/carme/carme-sessions.sqlite"}
    assert set(wiring["custom_scopes"]) == {READ_SCOPE, ADMIN_SCOPE}
    roles = {r["name"]: r for r in wiring["roles"]}
    own = roles["carme-sessions"]
    assert own["services"] == ["carme-sessions"]
    assert {"servers", "read:servers", "admin:server_state", "custom:carme-slurm:read"} <= set(own["scopes"])
    assert roles["carme-sessions-admins"]["users"] == ["admin"] and ADMIN_SCOPE in roles["carme-sessions-admins"]["scopes"]
    assert wiring["user_scopes"] == [f"{READ_SCOPE}!user", "access:services!service=carme-sessions"]
    for bad, words in [({"poll_seconds": 0}, "poll_seconds"), ({"extend_choices": [0]}, "extend_choices"),
                       ({"no_such": 1}, "no setting 'no_such'")]:
        with pytest.raises(ValueError, match=words) as e:
            hub_service(ServiceSettings("sessions", bad))
        assert "carme.sessions" in str(e.value)


class FakeHub:
    def __init__(self):
        self.model, self.jobs, self.recent, self.posted, self.deleted, self.refuse = user_model(), [job()], [], [], [], None

    async def get(self, path, **query):
        assert path == "users/alice" and query == {"include_stopped_servers": "1"}
        return self.model

    async def slurm(self, kind):
        snapshot = {"slurm_answering": True, "last_snapshot": NOW}
        if kind == "jobs":
            return {"snapshot": snapshot, "job_name_prefix": "carme-", "jobs": [j.to_dict() for j in self.jobs]}
        return {"snapshot": snapshot, "jobs": [j.to_dict() for j in self.recent]}

    def _answer(self, path):
        if self.refuse:
            code, message = self.refuse
            body = json.dumps({"status": code, "message": message}).encode()
            raise HTTPClientError(code, response=HTTPResponse(HTTPRequest(path), code, buffer=io.BytesIO(body)))

    async def post(self, path, body):
        self._answer(path)
        self.posted.append((path, body))
        return 202, None

    async def delete(self, path):
        self._answer(path)
        self.deleted.append(path)

    async def get_all(self, path, **query):
        return [self.model]


@pytest.fixture
def service(tmp_path, monkeypatch):
    app = SessionsService(config=Config({"SessionsService": {"db_url": f"sqlite:///{tmp_path}/sessions.sqlite"}}))
    app.initialize([])
    app.hub = FakeHub()
    monkeypatch.setattr(app, "hub_client", lambda: app.hub)
    return app


async def test_the_cards_join_the_hubs_servers_with_the_view_and_remember_the_choices(service):
    service.hub.model = user_model({"": server_model(user_options=GPU),
                                    "big": server_model(ready=False, state={}, user_options={"image": "tensorflow-gpu"})})
    service.hub.recent = [accounted("39", name="carme-alice-big", state="CANCELLED")]
    answer = await service.sessions(service.hub.model)
    default, big = answer["sessions"]
    assert (default["server"], default["status"], default["image"], default["job_id"]) == ("", "running", "pytorch-gpu", "41")
    assert (big["server"], big["status"], big["job_id"], big["ended"]["reason"]) == \
        ("big", "completed", "39", "stopped from the hub (Stop, an administrator or the idle culler)")
    assert answer["poll_seconds"] == 5 and answer["extend_choices"] == [15, 30, 60]
    assert service.store.choices("alice") == {"41": Choice("41", "alice", "", GPU, service.store.choices("alice")["41"].seen_at)}
    history = await service.history("alice")
    assert [r["job_id"] for r in history["history"]] == ["39"] and history["accounting"]


async def test_the_pass_remembers_every_running_servers_choices(service):
    result = await service.remember_pass()
    assert result["error"] is None and result["remembered"] == 1 and set(service.store.choices("alice")) == {"41"}


async def test_relaunch_starts_the_server_again_with_the_same_choices_through_the_hub(service):
    service.hub.model = user_model({"": server_model(ready=False, state={}, user_options=GPU)})
    answer = await service.relaunch("alice", service.hub.model, "", None)
    assert service.hub.posted == [("users/alice/server", {"user_options": GPU})] and answer["status"] == "starting"
    service.store.remember([Choice("30", "alice", "big", {"image": "python-cpu", "gpus": 0}, NOW)])
    await service.relaunch("admin", service.hub.model, "big", "30")  # from the history, a server the hub forgot
    assert service.hub.posted[-1] == ("users/alice/servers/big", {"user_options": {"image": "python-cpu", "gpus": 0}})


async def test_relaunch_refusals_keep_their_words(service):
    with pytest.raises(SessionError) as e:
        await service.relaunch("alice", user_model(), "", None)  # running
    assert e.value.status == 409 and "stop it first" in e.value.message
    with pytest.raises(SessionError) as e:
        await service.relaunch("alice", user_model({}), "", "77")
    assert e.value.status == 404 and "job 77" in e.value.message
    service.hub.refuse = (403, "Over your quota: servers at once: 1 of 1 are running or queued")
    with pytest.raises(SessionError) as e:
        await service.relaunch("alice", user_model({"": server_model(ready=False, state={})}), "", None)
    assert e.value.status == 403 and "servers at once: 1 of 1" in e.value.message
    service.hub.refuse = (400, "image: not in the catalog")
    with pytest.raises(SessionError) as e:
        await service.relaunch("alice", user_model({"": server_model(ready=False, state={})}), "", None)
    assert e.value.status == 400 and "image: not in the catalog" in e.value.message


async def test_stop_goes_through_the_hubs_api(service):
    answer = await service.stop("alice", user_model(), "")
    assert service.hub.deleted == ["users/alice/server"] and answer["job_id"] == "41"
    with pytest.raises(SessionError) as e:
        await service.stop("alice", user_model({"": server_model(ready=False, state={})}), "")
    assert e.value.status == 409


def test_the_page_extends_the_hubs_page_embeds_its_data_as_json_and_posts_the_xsrf_token():
    folder = Path(__file__).resolve().parents[2] / "carme_services/sessions/templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(folder), str(hub_template_dir())]), autoescape=True)
    source = (folder / "sessions.html").read_text()
    assert source.startswith('{% extends "page.html" %}') and ".innerHTML" not in source
    assert 'name: "_xsrf", value: boot.xsrf' in source and "api/sessions" in source and "data-end" in source
    data = {"sessions": [], "at": NOW, "poll_seconds": 5, "extend_choices": [15], "snapshot": {}}
    html = env.get_template("sessions.html").render(
        data=data, history={"history": []}, target="alice", user={"name": "alice", "json_escaped_name": "alice"},
        xsrf_token="tok</script>", service_prefix="/services/carme-sessions/", base_url="/hub/", prefix="/",
        static_url=lambda p, include_version=True: p, parsed_scopes=set(), services=[], no_spawner_check=True,
        is_admin=False, notice="", notice_kind="success")
    assert "tok\\u003c/script\\u003e" in html and "tok</script>" not in html  # JSON in the page cannot end its script
