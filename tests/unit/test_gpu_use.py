"""GPU use for the cockpit: carme-culler's tally of idle and busy GPU-hours (pure, kept in a file), its
api/idle and api/samples, the cockpit's charts of them, and the wiring that lets the cockpit read them."""

from __future__ import annotations

import json

import pytest

from carme_services.cockpit.charts import gpu_hours_by_day, idle_hours_chart, utilisation_chart, utilisation_series
from carme_services.cockpit.history import Window
from carme_services.cockpit.service import CULLER_SCOPES
from carme_services.cockpit.service import hub_service as cockpit_wiring
from carme_services.culler.idle import IdleTally, Watch, account_sample
from carme_services.culler.service import CullerService
from carme_services.culler.service import hub_service as culler_wiring
from carme_services.wiring import ServiceSettings

H = 3600
T0 = 1_800_000_000.0 - 1_800_000_000.0 % H  # an hour's start


def test_time_between_samples_counts_as_idle_or_busy_by_the_later_sample():
    tally, watch = IdleTally(), Watch()
    assert account_sample(watch, tally, T0, 0.0, 2, 5.0, 180) == (0.0, 0.0)  # the first sample: no time before it
    watch.add_sample(T0, 0.0, 10)
    assert account_sample(watch, tally, T0 + 60, 1.0, 2, 5.0, 180) == (120.0, 0.0)  # 2 GPUs x 60 s below 5 %
    watch.add_sample(T0 + 60, 1.0, 10)
    assert account_sample(watch, tally, T0 + 120, 5.0, 2, 5.0, 180) == (0.0, 120.0)  # at the threshold: busy
    watch.add_sample(T0 + 120, 5.0, 10)
    # the culler was away for an hour: only max_gap of it is counted, never a guess about the rest
    assert account_sample(watch, tally, T0 + 120 + H, 0.0, 2, 5.0, 180) == (360.0, 0.0)
    assert (watch.idle_gpu_s, watch.busy_gpu_s) == (480.0, 120.0)
    # the last stretch, T0+H-60 .. T0+H+120, is split over the two hours it covers
    assert tally.hours == {int(T0): [120.0 + 120.0, 120.0], int(T0 + H): [240.0, 0.0]}


def test_a_stretch_over_an_hour_boundary_is_split_between_the_hours():
    tally = IdleTally()
    tally.add(T0 + H - 30, T0 + H + 90, 1, idle=True)
    assert tally.hours == {int(T0): [30.0, 0.0], int(T0 + H): [90.0, 0.0]}
    assert tally.rows() == [{"start": int(T0), "idle_gpu_hours": round(30 / H, 4), "busy_gpu_hours": 0.0},
                            {"start": int(T0 + H), "idle_gpu_hours": round(90 / H, 4), "busy_gpu_hours": 0.0}]


def test_the_tally_keeps_its_last_hours_and_survives_a_file_round_trip_or_refuses_junk():
    tally = IdleTally(keep_hours=3)
    for i in range(5):
        tally.add(T0 + i * H, T0 + i * H + 60, 1, idle=bool(i % 2))
    assert sorted(tally.hours) == [int(T0 + i * H) for i in (2, 3, 4)]
    again = IdleTally.from_json(json.loads(json.dumps(tally.to_json())), keep_hours=3)
    assert again.hours == tally.hours
    assert IdleTally.from_json(json.loads(json.dumps(tally.to_json())), keep_hours=2).hours.keys() == {
        int(T0 + 3 * H), int(T0 + 4 * H)}
    for junk in (None, [], {"version": 2, "hours": {}}, {"version": 1, "hours": {"x": [1, 2], "7": [1, 2],
                                                                                  str(int(T0)): [-1, 0]}}):
        assert IdleTally.from_json(junk, 168).hours == {}


def test_the_culler_keeps_its_tally_in_a_file_across_restarts(tmp_path):
    path = tmp_path / "state" / "carme-culler-idle.json"
    culler = CullerService(tally_file=str(path))
    culler.initialize([])
    culler.tally.add(T0, T0 + 600, 2, idle=True)
    culler.save_tally()
    assert json.loads(path.read_text())["hours"] == {str(int(T0)): [1200.0, 0.0]}
    again = CullerService(tally_file=str(path))
    again.initialize([])
    assert again.tally.hours == {int(T0): [1200.0, 0.0]}
    path.write_text("{not json")
    broken = CullerService(tally_file=str(path))
    broken.initialize([])
    assert broken.tally.hours == {}  # a damaged file is a new tally, not a culler that will not start
    assert "carme-culler-idle.json" in culler_wiring(ServiceSettings("culler", {}, state_dir="/srv/carme")
                                                     )["service"]["environment"]["CARME_SERVICE_CONFIG"]


def test_the_cockpit_reads_the_culler_only_when_the_hub_enables_it():
    alone = cockpit_wiring(ServiceSettings("cockpit", {}, admin_users=("carol",)))
    own = next(r for r in alone["roles"] if r["name"] == "carme-cockpit")
    assert not set(CULLER_SCOPES) & set(own["scopes"])  # an undefined custom scope would stop the hub
    assert '"culler_url"' not in alone["service"]["environment"]["CARME_SERVICE_CONFIG"]
    both = cockpit_wiring(ServiceSettings("cockpit", {}, admin_users=("carol",),
                                          service_urls={"carme-culler": "http://127.0.0.1:10107"}))
    own = next(r for r in both["roles"] if r["name"] == "carme-cockpit")
    assert {"custom:carme-culler:admin", "access:services!service=carme-culler"} <= set(own["scopes"])
    assert '"culler_url": "http://127.0.0.1:10107"' in both["service"]["environment"]["CARME_SERVICE_CONFIG"]


def samples(job_id, user, values, start=T0):
    return {"job_id": job_id, "user": user, "server": "", "samples": [
        {"at": start + 60 * i, "utilization": v, "memory_mib": 100.0} for i, v in enumerate(values)]}


def test_utilisation_lines_per_job_busiest_first_as_svg_without_script():
    jobs = [samples("11", "bob", [0, 0, 0]), samples("12", "alice", [90, 80, 100]), samples("13", "carol", [])]
    series = utilisation_series(jobs)
    assert [label for label, _ in series] == ["12 alice/default", "11 bob/default"]  # no samples: no line
    assert [u for _, u in series[0][1]] == [90.0, 80.0, 100.0]
    svg = utilisation_chart(jobs)
    assert svg.startswith("<svg") and "<script" not in svg and "12 alice/default" in svg
    assert "(no samples yet)" in utilisation_chart([])


def test_idle_hours_chart_draws_idle_and_busy_per_hour():
    idle = {"threshold": 5.0, "hours": [{"start": int(T0), "idle_gpu_hours": 1.5, "busy_gpu_hours": 0.5}]}
    svg = idle_hours_chart(idle)
    assert "<script" not in svg and "below 5 %" in svg and ">idle<" in svg and ">busy<" in svg
    assert "<svg" in idle_hours_chart(None)


@pytest.mark.parametrize("key", ["project", "role"])
def test_gpu_hours_per_day_by_project_or_by_role(key):
    from datetime import datetime

    start = datetime(2027, 1, 4, 12)
    window = Window(datetime(2027, 1, 4), datetime(2027, 1, 6))
    rows = [{"start": start.timestamp(), "elapsed_s": 2 * H, "gpus": 2, "project": "vision", "role": "power"},
            {"start": start.timestamp(), "elapsed_s": H, "gpus": 1, "project": "nlp", "role": "power"}]
    _, series = gpu_hours_by_day(rows, window, key)
    assert series == ({"vision": [4.0, 0.0], "nlp": [1.0, 0.0]} if key == "project" else {"power": [5.0, 0.0]})
