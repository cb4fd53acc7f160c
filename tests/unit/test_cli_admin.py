"""Issue 23: `carme status|jobs|history|drain|resume|announce` against a fake hub (a tornado server in a thread
that records each request and answers canned documents shaped like the hub's view, carme-cockpit and
carme-announcements)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from carme_services import cli, cli_admin, cli_api

PORT = 20690  # helper-22's range
TOKEN = "t0ken-of-carol"
NODES = {"snapshot": {"slurm_answering": True, "last_snapshot": 1_800_000_000, "last_error": None},
         "nodes": [{"name": "carme-n1", "state": "mixed", "gpus": [{"type": "a100", "total": 2, "allocated": 1,
                                                                    "free": 1}], "gpus_free": 1, "reason": ""},
                   {"name": "carme-n2", "state": "drained", "gpus": [{"type": "a100", "total": 2, "allocated": 0,
                                                                      "free": 2}], "gpus_free": 0,
                    "reason": "fan broken"}],
         "gpus": {"a100": {"total": 4, "allocated": 1, "free": 1, "unavailable": 2}}}
JOBS = {"snapshot": {"slurm_answering": True, "last_snapshot": 1_800_000_000}, "job_name_prefix": "carme-",
        "jobs": [{"job_id": "41", "state": "RUNNING", "gpus": 1, "active": True, "carme": True},
                 {"job_id": "42", "state": "PENDING", "gpus": 2, "active": True, "carme": True},
                 {"job_id": "43", "state": "RUNNING", "gpus": 1, "active": True, "carme": False},
                 {"job_id": "40", "state": "COMPLETED", "gpus": 1, "active": False, "carme": True}]}
OVERVIEW = {"jobs": [{"job_id": "41", "user": "alice", "server": "", "project": "carme-dev", "image": "pytorch-gpu",
                      "gpus": 1, "gpu_type": "a100", "node": "carme-n1", "state": "RUNNING", "age_s": 3700,
                      "time_left_s": 1500, "pending_reason": "", "pending_words": ""},
                     {"job_id": "42", "user": "bob", "server": "exp2", "project": "vision", "image": "tf",
                      "gpus": 2, "gpu_type": "", "node": "", "state": "PENDING", "age_s": 40, "time_left_s": None,
                      "pending_reason": "Resources", "pending_words": "waiting for free GPUs"}],
            "other": {"jobs": 1, "running": 1, "pending": 0, "gpus_running": 1, "gpus_pending": 0, "users": 1}}
# the shape of carme-cockpit's GET api/history?format=json (carme_services.cockpit.history.COLUMNS)
HISTORY = {"rows": [{"job_id": "39", "user": "alice", "project": "carme-dev", "image": "pytorch-gpu", "gpus": 1,
                     "partition": "interactive", "state": "CANCELLED", "start": 1_800_000_000, "end": 1_800_003_600,
                     "wait_s": 5, "end_reason": "cancelled", "gpu_hours": 1.0}]}
CSV = "job_id,user,gpu_hours\r\n39,alice,1.0\r\n"


class Recorder(web.RequestHandler):
    def initialize(self, server):
        self.server = server

    async def answer(self, path):
        body = self.request.body
        self.server.requests.append({"method": self.request.method, "path": "/" + path,
                                     "query": {k: v[0] for k, v in parse_qs(self.request.query).items()},
                                     "auth": self.request.headers.get("Authorization"),
                                     "accept": self.request.headers.get("Accept"),
                                     "body": json.loads(body) if body else None})
        if self.server.delay:
            await asyncio.sleep(self.server.delay)
        status, data = self.server.answers.get((self.request.method, "/" + path), (404, {"message": "not canned"}))
        self.set_status(status)
        if isinstance(data, str):
            self.set_header("Content-Type", "text/csv")
            self.finish(data)
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(data))

    get = post = delete = answer


class FakeHub:
    def __init__(self):
        self.requests, self.answers, self.delay = [], {}, 0.0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.http = HTTPServer(web.Application([(r"/(.*)", Recorder, {"server": self})]))
            self.http.listen(PORT, "127.0.0.1")
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self):
        async def stop():
            self.http.stop()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def hub(monkeypatch):
    server = FakeHub()
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("JUPYTERHUB_URL", f"http://127.0.0.1:{PORT}")
    monkeypatch.delenv("CARME_URL", raising=False)
    yield server
    server.close()


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


def cells(text: str, first: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first`, split at the header's column starts."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(first + "  "))
    header = lines[at]
    starts = [0] + [i for i in range(1, len(header)) if header[i - 1] == " " and header[i] != " " and
                    header[i - 2:i] == "  "]
    rows = []
    for line in lines[at:]:
        if not line.strip():
            break
        rows.append([line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])])
    return rows


# ---- status: the hub's view ----------------------------------------------------------------------

def test_status_reads_the_hubs_view_of_nodes_and_jobs_and_prints_tables(hub, carme):
    hub.answers = {("GET", "/hub/api/carme/slurm/nodes"): (200, NODES), ("GET", "/hub/api/carme/slurm/jobs"): (200, JOBS)}
    status, out, err = carme("status")
    assert status == 0, err
    assert calls(hub) == [("GET", "/hub/api/carme/slurm/nodes"), ("GET", "/hub/api/carme/slurm/jobs")]
    assert cells(out, "node") == [["node", "state", "GPUs in use/total", "free", "reason"],
                                  ["carme-n1", "mixed", "a100 1/2", "1", "-"],
                                  ["carme-n2", "drained", "a100 0/2", "0", "fan broken"]]
    assert cells(out, "GPU type")[1] == ["a100", "4", "1", "1", "2"]
    assert cells(out, "jobs")[1:] == [["Carme", "pending", "1", "2"], ["Carme", "running", "1", "1"],
                                      ["other", "running", "1", "1"]]
    status, out, _ = carme("status", "--json")
    assert status == 0 and json.loads(out) == {"nodes": NODES, "jobs": JOBS}


def test_the_url_comes_from_the_option_then_jupyterhub_url_then_carme_url(hub, carme, monkeypatch):
    assert cli_api.hub_url("http://x") == "http://x" and cli_api.hub_url() == f"http://127.0.0.1:{PORT}"
    monkeypatch.delenv("JUPYTERHUB_URL")
    monkeypatch.setenv("CARME_URL", "http://carme-url")
    assert cli_api.hub_url() == "http://carme-url"
    monkeypatch.delenv("CARME_URL")
    assert cli_api.hub_url() == "http://127.0.0.1:8000"
    hub.answers = {("GET", "/services/carme-cockpit/api/overview"): (200, OVERVIEW)}
    assert carme("jobs", "--url", f"http://127.0.0.1:{PORT}")[0] == 0 and len(hub.requests) == 1


def test_no_token_is_exit_2_and_a_refusal_exit_1_with_the_apis_words(hub, carme, monkeypatch):
    hub.answers = {("GET", "/hub/api/carme/slurm/nodes"): (403, {"message": "the custom:carme-slurm:read scope is needed"})}
    status, out, err = carme("status")
    assert status == 1 and out == "" and "HTTP 403: the custom:carme-slurm:read scope is needed" in err
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    status, _, err = carme("status")
    assert status == 2 and "JUPYTERHUB_API_TOKEN is not set" in err
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    status, _, err = carme("status", "--url", "http://127.0.0.1:20699")
    assert status == 1 and "cannot reach http://127.0.0.1:20699" in err


# ---- carme-cockpit: jobs, history, drain, resume ---------------------------------------------------

def test_jobs_prints_the_cockpits_carme_jobs_and_counts_the_others(hub, carme):
    hub.answers = {("GET", "/services/carme-cockpit/api/overview"): (200, OVERVIEW)}
    status, out, err = carme("jobs")
    assert status == 0, err
    rows = cells(out, "job")
    assert rows[1] == ["41", "alice", "(default)", "carme-dev", "pytorch-gpu", "1 a100", "carme-n1", "running",
                       "1h01m", "25m", "-"]
    assert rows[2] == ["42", "bob", "exp2", "vision", "tf", "2", "-", "pending", "40s", "-", "waiting for free GPUs"]
    assert "other jobs: 1 (1 running with 1 GPUs, 0 pending) of 1 users" in out
    status, out, _ = carme("jobs", "--json")
    assert json.loads(out) == OVERVIEW


def test_history_passes_the_window_and_filters_and_prints_csv_json_or_a_table(hub, carme):
    hub.answers = {("GET", "/services/carme-cockpit/api/history"): (200, HISTORY)}
    status, out, err = carme("history", "--since", "30d", "--user", "alice", "--state", "CANCELLED")
    assert status == 0, err
    assert hub.requests[-1]["query"] == {"format": "json", "start": "30d", "user": "alice", "state": "CANCELLED"}
    rows = cells(out, "job id")
    assert rows[0][:3] == ["job id", "user", "project"] and rows[1][:2] == ["39", "alice"] and rows[1][-1] == "1"
    status, out, _ = carme("history", "--json")
    assert json.loads(out) == HISTORY and hub.requests[-1]["query"] == {"format": "json", "start": "7d"}
    hub.answers = {("GET", "/services/carme-cockpit/api/history"): (200, CSV)}
    status, out, _ = carme("history", "--since", "2026-11-01", "--csv")
    assert status == 0 and out == CSV
    assert hub.requests[-1]["query"] == {"format": "csv", "start": "2026-11-01"} and hub.requests[-1]["accept"] == "text/csv"
    status, _, err = carme("history", "--csv", "--json")
    assert status == 2 and "not both" in err


def test_a_long_query_says_so_on_stderr_and_keeps_stdout_for_the_answer(hub, carme, monkeypatch):
    hub.answers = {("GET", "/services/carme-cockpit/api/history"): (200, HISTORY)}
    hub.delay = 0.6
    real = cli_api.progress
    monkeypatch.setattr(cli_api, "progress", lambda what: real(what, after=0.1, every=0.2))
    status, out, err = carme("history", "--json")
    assert status == 0 and json.loads(out) == HISTORY
    assert "carme: reading the job history since 7d" in err and "done in" in err


def test_progress_is_silent_for_a_quick_query():
    stream = io.StringIO()
    with cli_api.progress("quick", after=5, stream=stream):
        pass
    assert stream.getvalue() == ""
    with cli_api.progress("slow", after=0.05, every=0.05, stream=stream):
        time.sleep(0.3)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "carme: slow..." and lines[-1].startswith("carme: slow: done in") and len(lines) >= 3


def test_drain_and_resume_post_to_the_cockpit(hub, carme):
    hub.answers = {("POST", "/services/carme-cockpit/api/nodes/carme-n2/drain"): (200, {"node": "carme-n2"}),
                   ("POST", "/services/carme-cockpit/api/nodes/carme-n2/resume"): (200, {"message": "carme-n2 resumed"})}
    status, out, err = carme("drain", "carme-n2", "--reason", "fan broken")
    assert status == 0, err
    assert hub.requests[-1]["body"] == {"reason": "fan broken"} and out.strip() == "carme-n2: drain done (reason: fan broken)"
    status, out, _ = carme("resume", "carme-n2")
    assert status == 0 and out.strip() == "carme-n2 resumed" and hub.requests[-1]["body"] == {}
    assert calls(hub) == [("POST", "/services/carme-cockpit/api/nodes/carme-n2/drain"),
                          ("POST", "/services/carme-cockpit/api/nodes/carme-n2/resume")]
    hub.answers = {("POST", "/services/carme-cockpit/api/nodes/nope/drain"):
                   (400, {"message": "node: SLURM lists no node 'nope'"})}
    status, _, err = carme("drain", "nope", "--reason", "x")
    assert status == 1 and "node: SLURM lists no node 'nope'" in err
    status, _, err = carme("drain", "carme-n2")
    assert status == 2 and "--reason" in err


# ---- carme announce ---------------------------------------------------------------------------------

POSTED = {"id": 3, "severity": "warning", "text": "carme-n2 drained", "start": 1_800_000_000,
          "expiry": 1_800_007_200, "state": "current", "created_by": "carol"}


def test_announce_posts_a_duration_and_a_local_time_with_its_zone(hub, carme):
    hub.answers = {("POST", "/services/carme-announcements/api/announcements"): (201, POSTED)}
    status, out, err = carme("announce", "carme-n2 drained", "--severity", "warning", "--expires", "2h")
    assert status == 0, err
    assert hub.requests[-1]["body"] == {"text": "carme-n2 drained", "severity": "warning", "duration": 7200}
    assert out.startswith("announcement 3 posted (warning): shown from ")
    status, _, err = carme("announce", "x", "--start", "2026-12-04T08:00", "--expires", "2026-12-04T12:00:00Z")
    assert status == 0, err
    body = hub.requests[-1]["body"]
    local = datetime(2026, 12, 4, 8, 0).astimezone()
    assert datetime.fromisoformat(body["start"]) == local and datetime.fromisoformat(body["start"]).tzinfo
    assert datetime.fromisoformat(body["expiry"]) == datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    before = datetime.now(timezone.utc)
    status, _, _ = carme("announce", "x", "--start", "30m", "--expires", "1h")
    start = datetime.fromisoformat(hub.requests[-1]["body"]["start"])
    assert before + timedelta(minutes=29) < start < before + timedelta(minutes=31)
    assert hub.requests[-1]["body"]["duration"] == 3600


def test_announce_list_current_delete_and_audit(hub, carme):
    hub.answers = {("GET", "/services/carme-announcements/api/announcements"): (200, {"announcements": [POSTED]}),
                   ("GET", "/services/carme-announcements/api/announcements/current"): (200, {"announcements": []}),
                   ("DELETE", "/services/carme-announcements/api/announcements/3"): (200, {**POSTED, "state": "deleted"}),
                   ("GET", "/services/carme-announcements/api/audit"):
                       (200, {"audit": [{"at": 1_800_000_000, "actor": "carol", "action": "posted",
                                         "announcement_id": 3, "notice": {"severity": "warning", "text": "a\nb"}}]})}
    status, out, _ = carme("announce", "--list", "--past")
    assert status == 0 and hub.requests[-1]["query"] == {"past": "1"}
    rows = cells(out, "id")
    assert rows[1][:3] == ["3", "warning", "current"] and rows[1][-2:] == ["carol", "carme-n2 drained"]
    assert carme("announce", "--current")[1].strip() == "no announcements"
    assert carme("announce", "--delete", "3")[1].strip() == "announcement 3 deleted"
    status, out, _ = carme("announce", "--audit")
    assert cells(out, "at")[1][1:] == ["carol", "posted", "3", "warning", "a b"]
    status, out, _ = carme("announce", "--list", "--json")
    assert json.loads(out) == {"announcements": [POSTED]}


def test_announce_refusals(hub, carme):
    hub.answers = {("POST", "/services/carme-announcements/api/announcements"):
                   (403, {"message": "posting, deleting and listing announcements needs custom:carme-announcements:admin"})}
    status, _, err = carme("announce", "hello", "--expires", "1h")
    assert status == 1 and "HTTP 403: posting" in err
    for args, words in [(("announce", "hello"), "--expires is required"),
                        (("announce", "hello", "--expires", "soonish"), "--expires: 'soonish' is neither"),
                        (("announce", "hello", "--start", "x", "--expires", "1h"), "--start: 'x' is neither"),
                        (("announce", "hello", "--list"), "give TEXT to post, or one of"),
                        (("announce",), "give TEXT to post, or one of"),
                        (("announce", "--list", "--delete", "3"), "give TEXT to post, or one of")]:
        status, _, err = carme(*args)
        assert status == 2 and words in err, (args, err)
    assert len(hub.requests) == 1


def test_every_admin_command_is_dispatched_by_the_one_entry_point():
    assert set(cli.ADMIN_COMMANDS) == set(cli_admin.COMMANDS)


def test_the_history_table_shows_columns_the_cockpit_serves():
    from carme_services.cli_admin import HISTORY_COLUMNS
    from carme_services.cockpit.history import COLUMNS

    assert set(HISTORY_COLUMNS) <= set(COLUMNS), set(HISTORY_COLUMNS) - set(COLUMNS)
