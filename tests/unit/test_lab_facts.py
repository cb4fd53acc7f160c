"""Issue 21, before walltime: what the Carme lab extension shows, from the services' answers (carme_lab.facts),
the sessions card's walltime warning, where a session finds the services, and the session token's scopes."""

from __future__ import annotations

import pytest

from carme_lab.facts import CULLER, SESSIONS, session_facts
from carme_services.sessions.cards import walltime_warning
from tests.unit.test_site_settings import load

NOW = 1_800_000_000.0


def card(**running):
    return {"server": "", "job_id": "41", "status": "ending soon", "image": "pytorch-gpu", "gpus": 1,
            "gpu_type": "a100", "node": "carme-n1", "time_limit_minutes": 4,
            "actions": {"extend": True}, "running": {"time_left_s": 170, **running}}


def test_the_service_names_are_the_services_own():
    from carme_services.culler.service import NAME as culler
    from carme_services.sessions.service import NAME as sessions

    assert (SESSIONS, CULLER) == (sessions, culler)


@pytest.mark.parametrize("left, due", [(300, None), (180, 3), (179, 3), (60, 1), (5, 1), (-10, 1)])
def test_the_walltime_warning_is_the_smallest_threshold_reached(left, due):
    warning = walltime_warning("41", NOW + left, NOW, [3, 1])
    assert (warning and warning["minutes"]) == due
    if due:
        assert "time limit" in warning["message"] and "extend" in warning["message"]
        assert len(warning["message"]) <= 140  # what a JupyterLab toast shows


def test_a_warning_key_is_new_per_threshold_and_per_end_time():
    three = walltime_warning("41", NOW + 170, NOW, [3, 1])["key"]
    one = walltime_warning("41", NOW + 50, NOW, [3, 1])["key"]
    extended = walltime_warning("41", NOW + 170 + 300, NOW + 300, [3, 1])["key"]  # same left, new end
    assert len({three, one, extended}) == 3
    assert walltime_warning("41", NOW + 170, NOW + 10, [3, 1])["key"] == three  # the same warning, read later


def test_the_facts_of_this_server_carry_the_walltime_warning_with_extend_choices():
    warning = walltime_warning("41", NOW + 170, NOW, [3, 1])
    other = {**card(), "server": "gpu2", "job_id": "52"}
    facts = session_facts("", {"sessions": [other, card(warning=warning)], "extend_choices": [5, 30],
                               "poll_seconds": 2}, None, NOW)
    assert facts["job_id"] == "41" and facts["gpus"] == 1 and facts["node"] == "carme-n1"
    assert facts["time_left_s"] == 170 and facts["poll_seconds"] == 2.0
    [w] = facts["warnings"]
    assert w["kind"] == "walltime" and w["key"] == warning["key"]
    assert [(a["label"], a["command"], a["minutes"]) for a in w["actions"]] == [
        ("Extend +5 min", "extend", 5), ("Extend +30 min", "extend", 30)]


def test_no_extend_is_offered_where_the_card_allows_none():
    c = card(warning=walltime_warning("41", NOW + 50, NOW, [3, 1]))
    c["actions"]["extend"] = False
    [w] = session_facts("", {"sessions": [c], "extend_choices": [5]}, None, NOW)["warnings"]
    assert w["actions"] == []


def test_the_culler_warning_says_when_it_stops_and_offers_keep_running_while_presses_are_left():
    row = {"user": "alice", "name": "", "job_id": "41", "state": "idle-warned", "stop_at": NOW + 120,
           "reason": "idle: GPUs below 5 % for 10 min", "keep_running_left": 2}
    facts = session_facts("", {"sessions": [card()]}, {"servers": [row, {**row, "name": "other"}]}, NOW)
    [w] = facts["warnings"]
    assert w["kind"] == "idle" and w["key"] == f"41:idle:{int(NOW + 120)}"
    assert "stops it in 2 min" in w["message"] and "2 presses left" in w["message"] and len(w["message"]) <= 140
    assert w["actions"] == [{"label": "Keep running", "command": "keep-running"}]
    spent = session_facts("", None, {"servers": [{**row, "keep_running_left": 0}]}, NOW)["warnings"][0]
    assert spent["actions"] == [] and "Keep running" not in spent["message"]
    busy = session_facts("", None, {"servers": [{**row, "state": "busy"}]}, NOW)
    assert busy["warnings"] == []


def test_a_service_that_did_not_answer_is_a_problem_not_an_error():
    facts = session_facts("", None, None, NOW, ["carme-culler: 404"])
    assert facts["job_id"] == "" and facts["warnings"] == [] and facts["problems"] == ["carme-culler: 404"]
    assert facts["poll_seconds"] == 30.0


@pytest.mark.parametrize("public, bind, url", [
    ("", "http://127.0.0.1:8000", "http://127.0.0.1:8000/services/"),
    ("", "http://127.0.0.1:8000/carme/", "http://127.0.0.1:8000/carme/services/"),
    ("https://carme.example.org/", "http://127.0.0.1:8000", "https://carme.example.org/services/"),
])
def test_a_session_finds_the_services_through_the_hubs_public_url_else_its_proxy(public, bind, url):
    from carme_spawner.settings import CarmeSpawnerSettings

    assert CarmeSpawnerSettings().jobs_services_url(public, bind) == url
    assert CarmeSpawnerSettings(services_url="https://x/s/").jobs_services_url(public, bind) == "https://x/s/"


def test_a_wildcard_bind_address_becomes_this_hosts_name(monkeypatch):
    import socket

    from carme_spawner.settings import CarmeSpawnerSettings

    monkeypatch.setattr(socket, "getfqdn", lambda: "hub.cluster")
    assert CarmeSpawnerSettings().jobs_services_url("", "http://0.0.0.0:8000") == "http://hub.cluster:8000/services/"


def test_the_session_token_gets_the_scopes_of_the_sessions_and_culler_services(monkeypatch, tmp_path):
    settings = f"carme:\n  state_dir: {tmp_path / 'state'}\n  sessions: {{}}\n  culler: {{}}\n"
    c = load(monkeypatch, tmp_path, settings)
    scopes = c.Spawner.server_token_scopes
    assert scopes[:2] == ["users:activity!user", "access:servers!server"]  # the hub's 'server' role, kept
    assert {"custom:carme-sessions:read!user", "access:services!service=carme-sessions",
            "custom:carme-culler:read!user", "access:services!service=carme-culler"} <= set(scopes)
    assert not any("admin" in s for s in scopes)
    assert "server_token_scopes" not in load(monkeypatch, tmp_path, f"carme:\n  state_dir: {tmp_path}/s\n").Spawner
