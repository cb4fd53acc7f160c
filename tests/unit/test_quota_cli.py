"""Issue 18: `carme quota ...` / `carme project ...` against a local stand-in for the hub and carme-quota
(http.server on 127.0.0.1 recording each request and answering canned JSON)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import carme_services.quota
from carme_services import cli

TOKEN = "t0ken-of-alice"
API = "/services/carme-quota/api/"
LIMITS = ["gpus_per_job", "max_servers", "gpu_hours", "max_runtime_minutes", "jobs_per_day", "priority"]


def limits(**set_) -> dict:
    return {name: set_.get(name) for name in LIMITS}


REPORT = {
    "user": "alice", "role": "user", "account": "carme",
    "limits": {"effective": limits(gpus_per_job=2, max_servers=1, gpu_hours=50.0, max_runtime_minutes=480),
               "role_default": limits(gpus_per_job=2, max_servers=2, gpu_hours=100.0,
                                      max_runtime_minutes=480),
               "override": limits(max_servers=1, gpu_hours=50.0)},
    "usage": {"servers": 1, "started_today": 3, "gpu_hours_used": 12.5, "gpu_hours_held": 1.25,
              "resets_at": "2030-02-01T00:00:00"},
    "projects": ["vision"], "running": [], "snapshot": {},
}
SYNC = {"at": 1.0, "dry_run": True, "cluster": "carme", "ran": 0, "associations": 3, "error": None,
        "commands": [["sacctmgr", "-i", "modify", "user", "where", "name=alice", "set", "MaxJobs=1"],
                     ["sacctmgr", "-i", "add", "account", "vision", "Description=the vision project"]],
        "drift": [{"what": "user bob", "field": "MaxWall", "slurm": 60, "carme": 480, "overwritten": False}]}
PROJECT = {"name": "vision", "description": "", "managers": ["carol"], "members": ["alice"],
           "template": {"gpus_at_once": 4, "gpus_per_job": None, "max_runtime_minutes": None,
                        "gpu_hours": 100.0, "partitions": ["batch"]}}


class Recorder(BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        self.server.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                     "auth": self.headers.get("Authorization"),
                                     "body": json.loads(body) if body else None})
        status, data = self.server.answers.get((self.command, url.path), (404, {"message": "not canned"}))
        out = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests, server.answers = [], {("GET", "/hub/api/user"): (200, {"name": "alice"})}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("CARME_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def carme(capsys):
    def run(*args: str) -> tuple[int, str, str]:
        try:
            cli.main(list(args))
            status = 0
        except SystemExit as e:
            status = e.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


def calls(server) -> list[tuple[str, str]]:
    assert {r["auth"] for r in server.requests} == {f"token {TOKEN}"}
    return [(r["method"], r["path"]) for r in server.requests]


def columns(text: str, first: str) -> list[list[str]]:
    """The table whose header starts with `first` (up to the first line without a column gap), each
    line cut at the header's column starts: misaligned cells come out wrong."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(first + "  "))
    header = lines[at]
    starts = [0] + [i for i in range(2, len(header)) if header[i] != " " and header[i - 2:i] == "  "]
    rows = []
    for line in lines[at:]:
        if "  " not in line:
            break
        rows.append([line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)])
    return rows


def test_show_without_user_asks_the_hub_who_you_are_and_prints_a_row_per_limit(hub, carme):
    hub.answers[("GET", API + "users/alice")] = (200, REPORT)
    status, out, err = carme("quota", "show")
    assert (status, err) == (0, "")
    assert calls(hub) == [("GET", "/hub/api/user"), ("GET", API + "users/alice")]
    rows = columns(out, "limit")
    assert rows[0] == ["limit", "effective", "role default", "override", "use"]
    assert rows[1:] == [
        ["gpus_per_job", "2", "2", "-", "-"],
        ["max_servers", "1", "2", "1", "1 running or queued"],
        ["gpu_hours", "50", "100", "50", "12.5 used, 1.25 held by running ones"],
        ["max_runtime_minutes", "480", "480", "-", "-"],
        ["jobs_per_day", "no limit", "-", "-", "3 today"],
        ["priority", "no limit", "-", "-", "-"],
        ["scratch_gib", "no limit", "-", "-", "-"],
        ["disk_gib", "no limit", "-", "-", "-"],
        ["disk_inodes", "no limit", "-", "-", "-"],
    ]
    assert out.startswith("alice (role user, account carme)\n")
    assert "GPU-hours reset at 2030-02-01T00:00:00" in out and "projects: vision" in out


def test_show_json_prints_the_answer_as_is(hub, carme):
    hub.answers[("GET", API + "users/bob")] = (200, {**REPORT, "user": "bob"})
    status, out, _ = carme("quota", "show", "bob", "--json")
    assert status == 0 and json.loads(out) == {**REPORT, "user": "bob"}
    assert calls(hub) == [("GET", API + "users/bob")]


def test_list_keeps_the_apis_order(hub, carme):
    bob = {**REPORT, "user": "bob", "usage": {**REPORT["usage"], "gpu_hours_used": 3.0}}
    hub.answers[("GET", API + "users")] = (200, {"users": [REPORT, bob]})
    status, out, _ = carme("quota", "list")
    assert status == 0 and calls(hub) == [("GET", API + "users")]
    rows = columns(out, "user")
    assert [r[0] for r in rows] == ["user", "alice", "bob"]
    assert rows[1][:4] == ["alice", "user", "1", "12.5"] and rows[1][-1] == "max_servers=1 gpu_hours=50"


def test_set_changes_the_named_fields_and_keeps_the_rest_of_the_override(hub, carme):
    report = {**REPORT, "limits": {**REPORT["limits"], "override": limits(gpu_hours=20.0, jobs_per_day=3)}}
    hub.answers[("GET", API + "users/bob")] = (200, report)
    new = limits(max_servers=1, jobs_per_day=3, priority=5)
    hub.answers[("PUT", API + "users/bob/override")] = (200, {"user": "bob", "override": new, "sync": {}})
    status, out, err = carme("quota", "set", "bob", "max_servers=1", "gpu_hours=none", "priority=5")
    assert (status, err) == (0, "")
    assert calls(hub) == [("GET", API + "users/bob"), ("PUT", API + "users/bob/override")]
    assert hub.requests[1]["body"] == new
    assert out.strip() == "override of bob: max_servers=1 jobs_per_day=3 priority=5"


def test_a_change_whose_sync_failed_says_so(hub, carme):
    hub.answers[("DELETE", API + "users/bob/override")] = (
        200, {"user": "bob", "override": limits(), "sync": {"error": "sacctmgr: cannot reach slurmdbd"}})
    status, out, _ = carme("quota", "clear", "bob")
    assert status == 0 and calls(hub) == [("DELETE", API + "users/bob/override")]
    assert out.splitlines() == ["override of bob: none",
                                "warning: the sync after the change failed (the next one retries): "
                                "sacctmgr: cannot reach slurmdbd"]


@pytest.mark.parametrize("pair, field", [
    ("colour=red", "colour: unknown limit"),
    ("max_servers=lots", "max_servers: 'lots' is not a number"),
    ("max_servers=1.5", "max_servers: must be a whole number"),
    ("gpu_hours=-1", "gpu_hours: must be between"),
    ("gpu_hours=nan", "gpu_hours: must be between"),
    ("gpu_hours", "expected LIMIT=VALUE"),
])
def test_bad_limits_are_refused_before_any_request(hub, carme, pair, field):
    status, out, err = carme("quota", "set", "bob", "max_servers=1", pair)
    assert status == 2 and field in err and hub.requests == []


def test_sync_prints_the_commands_and_the_drift(hub, carme):
    hub.answers[("POST", API + "sync")] = (200, SYNC)
    status, out, _ = carme("quota", "sync", "--dry-run")
    assert status == 0 and calls(hub) == [("POST", API + "sync")]
    assert hub.requests[0]["query"] == {"dry_run": ["1"]}
    lines = out.splitlines()
    assert lines[:3] == ["sync (dry run) of cluster carme: 2 sacctmgr command(s), 0 run, 3 associations",
                         "sacctmgr -i modify user where name=alice set MaxJobs=1",
                         "sacctmgr -i add account vision 'Description=the vision project'"]
    assert columns(out, "what") == [["what", "field", "SLURM", "Carme", "action"],
                                    ["user bob", "MaxWall", "60", "480", "kept"]]


def test_sync_without_dry_run_and_a_failed_sync_exits_1(hub, carme):
    hub.answers[("POST", API + "sync")] = (200, {**SYNC, "dry_run": False, "commands": [], "drift": [],
                                                 "error": "sacctmgr: timed out"})
    status, out, err = carme("quota", "sync", "--json")
    assert status == 1 and hub.requests[0]["query"] == {}
    assert json.loads(out)["error"] == "sacctmgr: timed out" and "sacctmgr: timed out" in err


def test_audit_passes_target_and_limit(hub, carme):
    entry = {"id": 1, "at": "2030-01-01T10:00:00", "actor": "root", "action": "override.set",
             "target": "user:alice", "field": "max_servers", "old": None, "new": 1}
    hub.answers[("GET", API + "audit")] = (200, {"audit": [entry]})
    status, out, _ = carme("quota", "audit", "--target", "user:alice", "--limit", "5")
    assert status == 0 and calls(hub) == [("GET", API + "audit")]
    assert hub.requests[0]["query"] == {"target": ["user:alice"], "limit": ["5"]}
    assert columns(out, "at")[1] == ["2030-01-01T10:00:00", "root", "override.set", "user:alice",
                                     "max_servers", "- -> 1"]


def test_project_commands_send_what_the_api_expects(hub, carme):
    hub.answers.update({
        ("GET", API + "projects"): (200, {"projects": [{**PROJECT, "member": True, "manager": False}]}),
        ("POST", API + "projects"): (201, {"project": PROJECT, "sync": {"error": None}}),
        ("POST", API + "projects/vision/requests"): (201, {"request": {"id": 7, "project": "vision",
                                                                       "user": "alice", "state": "pending"}}),
        ("GET", API + "projects/vision/requests"): (200, {"requests": [
            {"id": 7, "project": "vision", "user": "alice", "message": "for my thesis", "state": "pending",
             "created_at": "2030-01-01T10:00:00", "decided_by": None, "decided_at": None}]}),
        ("POST", API + "projects/vision/requests/7"): (200, {"request": {"id": 7, "user": "alice",
                                                                         "state": "approved"}, "sync": {}}),
    })
    assert carme("project", "list")[0] == 0
    status, out, _ = carme("project", "create", "vision", "--description", "eyes", "--manager", "carol",
                           "dave", "--gpus-at-once", "4", "--gpu-hours", "100", "--partition", "batch")
    assert status == 0 and out.strip() == ("project vision created: gpus_at_once=4 gpu_hours=100 "
                                           "partitions=batch; managers carol")
    assert carme("project", "request", "vision", "--message", "for my thesis")[1].strip() == \
        "request 7 (alice, project vision): pending"
    status, out, _ = carme("project", "requests", "vision")
    assert columns(out, "id")[1] == ["7", "alice", "pending", "2030-01-01T10:00:00", "for my thesis"]
    assert carme("project", "approve", "vision", "7")[1].strip() == "request 7 (alice): approved"
    assert carme("project", "deny", "vision", "7")[0] == 0
    requests = API + "projects/vision/requests"
    assert calls(hub) == [("GET", API + "projects"), ("POST", API + "projects"), ("POST", requests),
                          ("GET", requests), ("POST", requests + "/7"), ("POST", requests + "/7")]
    bodies = [r["body"] for r in hub.requests]
    assert bodies[1] == {"name": "vision", "description": "eyes", "managers": ["carol", "dave"],
                         "template": {"gpus_at_once": 4, "gpu_hours": 100.0, "partitions": ["batch"]}}
    assert bodies[2] == {"message": "for my thesis"}
    assert bodies[4:] == [{"approve": True}, {"approve": False}]
    listed = columns(carme("project", "list")[1], "project")
    assert listed[1] == ["vision", "member", "carol", "alice",
                         "gpus_at_once=4 gpu_hours=100 partitions=batch", "-"]


def test_a_refusal_prints_the_apis_message_and_exits_1(hub, carme):
    hub.answers[("GET", API + "users")] = (403, {"status": 403, "message": "this needs the "
                                                 "custom:carme-quota:admin scope (the hub's admins)"})
    status, out, err = carme("quota", "list")
    assert (status, out) == (1, "")
    assert err.strip() == ("carme: GET services/carme-quota/api/users: HTTP 403: this needs the "
                           "custom:carme-quota:admin scope (the hub's admins)")


def test_no_token_exits_2_before_any_request(hub, carme, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    status, _, err = carme("quota", "show")
    assert status == 2 and "JUPYTERHUB_API_TOKEN is not set" in err and hub.requests == []


def test_url_option_wins_over_the_environment(hub, carme, monkeypatch):
    url = f"http://127.0.0.1:{hub.server_address[1]}/"
    monkeypatch.setenv("CARME_URL", "http://127.0.0.1:1")
    hub.answers[("GET", API + "projects")] = (200, {"projects": []})
    assert carme("project", "list", "--url", url)[0] == 0 and calls(hub) == [("GET", API + "projects")]
    status, _, err = carme("project", "list")
    assert status == 1 and "cannot reach http://127.0.0.1:1" in err


@pytest.mark.parametrize("args", [["--help-all"], [], ["--once"], ["--dry-run"], ["--QuotaService.once=1"]])
def test_carme_quota_without_a_client_command_runs_the_service(monkeypatch, args):
    ran = []
    monkeypatch.setattr(carme_services.quota, "main", ran.append)
    monkeypatch.setattr(cli, "client_main", lambda args: pytest.fail(f"the client ran for {args}"))
    cli.main(["quota", *args])
    assert ran == [args]
