"""carme-announcements (issue 23): its store and migration, the audit, the file it publishes, its API on a real
tornado server (the hub's OAuth replaced by a header naming the caller's scopes), its page, and its wiring."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import jinja2
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets.config import Config

from carme_core import announcements as hub_side
from carme_core.db import now_utc, version_table
from carme_services.announcements.notices import NewNotice
from carme_services.announcements.service import ADMIN_SCOPE, AnnouncementsService, hub_service
from carme_services.announcements.store import SERVICE, AnnouncementStore, Base, database
from carme_services.base import CarmeServiceHandler, hub_template_dir
from carme_services.wiring import ServiceSettings, apply_wiring

PORT = 20691  # helper-22's range


def new(hours_from_now: float = 0, hours: float = 1, text: str = "maintenance", severity: str = "warning") -> NewNotice:
    start = now_utc() + timedelta(hours=hours_from_now)
    return NewNotice(severity, text, start, start + timedelta(hours=hours))


# ---- the store ------------------------------------------------------------------------------------

def test_the_migration_and_the_models_agree_and_downgrade_drops_the_tables(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    db.upgrade()
    table = version_table(SERVICE)
    assert table == "alembic_version_carme_announcements" and db.current_revision() == "0001"
    assert set(sa.inspect(db.engine).get_table_names()) == {"announcements", "announcement_audit", table}
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": table, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    command.downgrade(db.alembic_config(), "base")
    assert set(sa.inspect(db.engine).get_table_names()) == {table}


@pytest.fixture
def store(tmp_path) -> AnnouncementStore:
    db = database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    db.upgrade()
    return AnnouncementStore(db)


def test_posting_and_deleting_are_audited_with_who_when_and_what(store):
    posted = store.post("carol", new(text="carme-n2 drained"))
    later = store.post("carol", new(hours_from_now=24))
    assert (posted["state"], later["state"], posted["created_by"]) == ("current", "scheduled", "carol")
    assert [n["id"] for n in store.listing()] == [posted["id"], later["id"]]
    deleted = store.delete("admin", posted["id"])
    assert (deleted["state"], deleted["deleted_by"]) == ("deleted", "admin")
    assert store.delete("admin", posted["id"]) is None and store.delete("admin", 999) is None
    assert [n["id"] for n in store.listing()] == [later["id"]]
    assert [n["id"] for n in store.listing(include_past_days=1)] == [posted["id"], later["id"]]
    audit = store.audit()
    assert [(e["actor"], e["action"], e["announcement_id"]) for e in audit] == \
        [("admin", "deleted", posted["id"]), ("carol", "posted", later["id"]), ("carol", "posted", posted["id"])]
    assert audit[-1]["notice"]["text"] == "carme-n2 drained" and audit[-1]["notice"]["severity"] == "warning"
    assert abs(audit[0]["at"] - time.time()) < 120 and audit[0]["at_iso"].endswith("+00:00")


def test_expired_notices_leave_the_listing_and_the_database_refuses_an_expiry_before_the_start(store):
    old = store.post("carol", NewNotice("info", "old", now_utc() - timedelta(hours=2), now_utc() - timedelta(hours=1)))
    assert store.listing() == [] and store.listing(include_past_days=1)[0]["state"] == "expired"
    assert old["state"] == "expired"
    with pytest.raises(sa.exc.IntegrityError):
        store.post("carol", NewNotice("info", "bad", now_utc(), now_utc() - timedelta(seconds=1)))


# ---- the service: the file it publishes, the API ----------------------------------------------------

@pytest.fixture
def service(tmp_path):
    app = AnnouncementsService(config=Config({"AnnouncementsService": {
        "db_url": f"sqlite:///{tmp_path}/a.sqlite", "current_file": str(tmp_path / hub_side.FILE_NAME),
        "service_prefix": "/services/carme-announcements/", "max_text_length": 40}}))
    app.initialize([])
    return app


async def test_every_change_rewrites_the_file_the_hub_reads(service):
    path = service.current_file
    posted = await service.post("carol", new(text="<b>drained</b>"))
    await service.post("carol", new(hours_from_now=2))
    source = hub_side.NoticeFile(path)
    assert [n["id"] for n in source.notices()] == [posted["id"], posted["id"] + 1]
    assert [n["text"] for n in source.current()] == ["<b>drained</b>"]
    assert "&lt;b&gt;drained&lt;/b&gt;" in hub_side.template_vars(path)["announcement"](object())
    await service.delete("carol", posted["id"])
    assert [n["id"] for n in hub_side.NoticeFile(path).notices()] == [posted["id"] + 1]


async def test_the_periodic_publish_writes_the_file_from_the_store(service, tmp_path):
    service.store.post("carol", new())  # not through the service: only the store knows
    assert not (tmp_path / hub_side.FILE_NAME).exists()
    [task] = service.periodic_tasks()
    await task.run()
    assert len(hub_side.NoticeFile(service.current_file).current()) == 1


@pytest.fixture
async def api(service, monkeypatch):
    """The service's web app on a real port; the caller is the X-Test-User header: "name scope scope..."."""
    def fake_user(self):
        words = (self.request.headers.get("X-Test-User") or "").split()
        return {"name": words[0], "kind": "user", "groups": [], "scopes": words[1:]} if words else None

    monkeypatch.setattr(CarmeServiceHandler, "get_current_user", fake_user)
    monkeypatch.setattr(CarmeServiceHandler, "xsrf_token", property(lambda self: b"test-xsrf"))
    server = service.make_web_app().listen(PORT, "127.0.0.1")
    base = f"http://127.0.0.1:{PORT}/services/carme-announcements/"

    async def call(method, path, who="carol " + ADMIN_SCOPE, body=None, form=None):
        kwargs = {"method": method, "headers": {"X-Test-User": who}, "follow_redirects": False}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        if form is not None:
            from urllib.parse import urlencode
            kwargs["body"] = urlencode(form)
        if method in ("POST",) and "body" not in kwargs:
            kwargs["body"] = ""
        try:
            r = await AsyncHTTPClient().fetch(base + path, **kwargs)
        except HTTPClientError as e:
            r = e.response
        text = r.body.decode()
        return r.code, (json.loads(text) if r.headers.get("Content-Type", "").startswith("application/json") else text)

    yield call
    server.stop()


async def test_admins_post_list_and_delete_and_everyone_reads_the_current_ones(api):
    code, posted = await api("POST", "api/announcements", body={"severity": "danger", "text": "down at 8",
                                                                "duration": 3600})
    assert code == 201 and posted["severity"] == "danger" and posted["created_by"] == "carol", posted
    code, later = await api("POST", "api/announcements", body={"text": "later", "start": time.time() + 3600,
                                                               "expiry": time.time() + 7200})
    assert code == 201
    code, current = await api("GET", "api/announcements/current", who="alice")
    assert code == 200 and [n["id"] for n in current["announcements"]] == [posted["id"]]
    code, listing = await api("GET", "api/announcements")
    assert [n["state"] for n in listing["announcements"]] == ["current", "scheduled"]
    code, deleted = await api("DELETE", f"api/announcements/{posted['id']}")
    assert code == 200 and deleted["deleted_by"] == "carol"
    code, gone = await api("DELETE", f"api/announcements/{posted['id']}")
    assert code == 404 and "id: no announcement" in gone["message"]
    code, audit = await api("GET", "api/audit")
    assert [e["action"] for e in audit["audit"]] == ["deleted", "posted", "posted"]


async def test_a_user_without_the_admin_scope_gets_403_and_bad_input_400_naming_the_field(api):
    for method, path, body in [("POST", "api/announcements", {"text": "x", "duration": 60}),
                               ("GET", "api/announcements", None), ("DELETE", "api/announcements/1", None),
                               ("GET", "api/audit", None)]:
        code, answer = await api(method, path, who="alice access:services", body=body)
        assert code == 403 and ADMIN_SCOPE in answer["message"], (method, path, answer)
    for body, field in [({"text": "x" * 41, "duration": 60}, "text"), ({"text": "x", "expiry": "2001-01-01T00:00Z"},
                        "expiry"), ({"text": "x", "duration": 60, "severity": "meh"}, "severity"),
                        ({"text": "x", "start": "noon", "duration": 60}, "start")]:
        code, answer = await api("POST", "api/announcements", body=body)
        assert code == 400 and answer["message"].startswith(f"{field}: "), answer
    code, answer = await api("POST", "api/announcements", body=None)
    assert code == 400
    code, answer = await api("DELETE", "api/announcements/abc")
    assert code == 400 and answer["message"].startswith("id: ")
    code, _ = await api("GET", "api/announcements/current", who="")
    assert code in (302, 403)  # nobody logged in: off to the hub's login


async def test_the_page_shows_the_current_ones_escaped_and_admins_post_with_the_form(api):
    code, page = await api("POST", "", form={"action": "post", "text": "<script>x()</script>", "severity": "info",
                                              "start": "", "expiry": "2h", "_xsrf": "test-xsrf"})
    assert code == 200 and "Announcement 1 posted." in page
    assert "<script>x()</script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert 'name="_xsrf" value="test-xsrf"' in page and 'id="announcements-post"' in page
    code, page = await api("POST", "", form={"action": "post", "text": "x", "expiry": "yesterday"})
    assert code == 400 and "expiry: " in page and 'value="yesterday"' in page  # the form keeps what was typed
    code, page = await api("GET", "", who="alice")
    assert code == 200 and "&lt;script&gt;" in page and 'id="announcements-post"' not in page
    code, _ = await api("POST", "", who="alice", form={"action": "delete", "id": "1"})
    assert code == 403


def test_the_page_extends_the_hubs_page():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(AnnouncementsService.template_dir),
                                                             str(hub_template_dir())]), autoescape=True)
    source = env.loader.get_source(env, "announcements.html")[0]
    assert source.startswith('{% extends "page.html" %}') and "| safe" not in source


# ---- the hub's wiring ----------------------------------------------------------------------------------

def test_the_wiring_declares_the_scope_the_admins_role_the_store_the_file_and_the_pages_variables(tmp_path):
    settings = ServiceSettings("announcements", {"max_duration_days": 7}, admin_users=("carol",),
                               state_dir=str(tmp_path))
    wiring = hub_service(settings)
    service = wiring["service"]
    assert service["name"] == "carme-announcements" and service["url"] == "http://127.0.0.1:10111"
    assert service["command"][1:] == ["-m", "carme_services.announcements.service"] and service["display"]
    config = json.loads(service["environment"]["CARME_SERVICE_CONFIG"])["AnnouncementsService"]
    assert config == {"max_duration_days": 7, "db_url": f"sqlite:///{tmp_path}/carme-announcements.sqlite",
                      "current_file": str(tmp_path / "carme-announcements.json")}
    assert set(wiring["custom_scopes"]) == {ADMIN_SCOPE}
    [role] = wiring["roles"]
    assert role["users"] == ["carol"] and "admin" in role["groups"] and role["scopes"] == [ADMIN_SCOPE]
    assert wiring["user_scopes"] == ["access:services!service=carme-announcements"]
    assert set(wiring["template_vars"]) == {"announcement", "announcement_spawn", "announcement_home"}
    hub_side.write_notices(tmp_path / "carme-announcements.json",
                           [{"id": 1, "severity": "info", "text": "hi", "start": 0, "expiry": time.time() + 60}])
    assert "hi" in wiring["template_vars"]["announcement_spawn"](object())
    for bad, words in [({"max_text_length": 0}, "max_text_length"), ({"nope": 1}, "no setting 'nope'")]:
        with pytest.raises(ValueError, match=words):
            hub_service(ServiceSettings("announcements", bad))


def test_apply_wiring_joins_the_sites_own_template_vars():
    c = Config()
    c.JupyterHub.template_vars = {"announcement": "<p>site</p>", "other": 1}
    apply_wiring(c, {"template_vars": {"announcement": lambda user: "<p>ours</p>", "announcement_spawn": str}})
    names = c.JupyterHub.template_vars
    assert names["other"] == 1 and names["announcement"]("u") == "<p>site</p><p>ours</p>"
    assert names["announcement_spawn"] is str


def test_times_in_answers_are_epoch_and_iso(store):
    posted = store.post("carol", NewNotice("info", "x", datetime(2030, 1, 1, tzinfo=timezone.utc),
                                           datetime(2030, 1, 2, tzinfo=timezone.utc)))
    assert posted["start"] == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    assert posted["start_iso"] == "2030-01-01T00:00:00+00:00" and posted["state"] == "scheduled"
