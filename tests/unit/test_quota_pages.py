"""carme_services.quota.pages: the usage page's rows, summary, warning and chart from a report."""

from __future__ import annotations

from datetime import datetime

from carme_services.quota.pages import daily_chart, limit_rows, near_budget, summary

REPORT = {
    "user": "alice", "role": "user",
    "limits": {"effective": {"gpus_per_job": 2, "max_servers": 1, "gpu_hours": 10.0, "max_runtime_minutes": None,
                             "jobs_per_day": None, "priority": None},
               "role_default": {"gpus_per_job": 1, "max_servers": 1, "gpu_hours": 10.0, "max_runtime_minutes": None,
                                "jobs_per_day": None, "priority": None},
               "override": {"gpus_per_job": 2, "max_servers": None, "gpu_hours": None, "max_runtime_minutes": None,
                            "jobs_per_day": None, "priority": None}},
    "usage": {"servers": 1, "started_today": 3, "gpu_hours_used": 8.0, "gpu_hours_held": 0.5,
              "resets_at": "2027-01-01T00:00:00", "period_start": "2026-12-01T00:00:00"},
    "history": [{"day": "2026-12-01", "gpu_hours": 5.0}, {"day": "2026-12-02", "gpu_hours": 3.0}],
}


def test_each_limit_shows_the_use_and_the_layer_that_set_it():
    rows = {r["field"]: r for r in limit_rows(REPORT)}
    assert rows["gpus_per_job"]["limit"] == "2 GPUs" and rows["gpus_per_job"]["source"] == "your override"
    assert rows["max_servers"]["use"] == "1 servers" and rows["max_servers"]["source"] == "your role"
    assert rows["gpu_hours"]["use"] == "8.5 GPU-hours" and rows["gpu_hours"]["limit"] == "10 GPU-hours"
    assert rows["priority"]["limit"] == "no limit" and rows["priority"]["source"] == ""


def test_summary_and_warning_near_the_budget():
    assert summary(REPORT) == "GPU-hours this period: 8 of 10, resets 1 Jan · servers: 1 of 1"
    assert near_budget(REPORT, 0.8).startswith("You have used 8.5 of your 10 GPU-hours (85 %)")
    assert near_budget(REPORT, 0.9) == "" and near_budget(REPORT, 0) == ""


def test_the_chart_has_a_bar_per_day_of_the_period_and_no_script():
    svg = daily_chart(REPORT, datetime(2026, 12, 3, 12))
    assert svg.startswith("<svg") and "<script" not in svg
    assert "1 Dec" in svg and "3 Dec" in svg and "30 Nov" not in svg
