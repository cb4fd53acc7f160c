"""The cockpit's job history (issue 23): bounded windows (refused beyond max_window_days, naming the field),
sacct's rows with its own GPU-seconds, filters, CSV that matches the JSON, the cached reader, the images
carme-sessions remembered, and the charts. `sacct-22.05-cockpit.txt` is real: `sacct -a -X -P -o
<HISTORY_FIELDS>` on the dev cluster (Slurm 22.05.8, host in UTC)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from carme_services.cockpit.accounting import SacctReader, remembered_choices
from carme_services.cockpit.charts import gpu_hours_by_day, gpu_hours_chart, wait_buckets, wait_chart
from carme_services.cockpit.errors import InputError
from carme_services.cockpit.history import (
    COLUMNS,
    HISTORY_FIELDS,
    Window,
    filter_rows,
    history_rows,
    parse_filters,
    parse_history,
    parse_window,
    sacct_argv,
    to_csv,
    totals,
)
from carme_services.sessions.history import Choice
from carme_services.sessions.store import SessionStore
from carme_services.sessions.store import database as sessions_database

SACCT = (Path(__file__).resolve().parents[1] / "fixtures" / "accounting" / "sacct-22.05-cockpit.txt").read_text()
NOW = datetime(2027, 3, 10, 12, 30, 15)


def test_a_window_is_bounded_and_to_the_minute():
    w = parse_window({}, NOW, 31)
    assert (w.start, w.end) == (datetime(2027, 3, 3, 12, 30), datetime(2027, 3, 10, 12, 31))
    assert parse_window({"start": "12h"}, NOW, 31).start == datetime(2027, 3, 10, 0, 30)
    w = parse_window({"start": "2027-02-01", "end": "2027-02-28"}, NOW, 31)
    assert (w.start, w.end) == (datetime(2027, 2, 1), datetime(2027, 3, 1))  # an end date counts whole
    w = parse_window({"start": "2027-03-10T08:00", "end": "now"}, NOW, 31)
    assert w.days == (4 * 60 + 31) / 1440
    assert parse_window({"start": "1d", "end": "2099-01-01"}, NOW, 31).end == datetime(2027, 3, 10, 12, 31)
    assert sacct_argv(w) == ["sacct", "-a", "-X", "-P", "-S", "2027-03-10T08:00:00", "-E", "2027-03-10T12:31:00",
                             "-o", ",".join(HISTORY_FIELDS)]


@pytest.mark.parametrize(("query", "field", "words"), [
    ({"start": "32d"}, "start", "at most 31 days"),
    ({"start": "2027-01-01", "end": "2027-03-01"}, "start", "at most 31 days"),
    ({"start": "yesterday"}, "start", "must be a date"),
    ({"end": "2027-13-01"}, "end", "must be a date"),
    ({"start": "2027-03-09", "end": "2027-03-01"}, "start", "must be before end"),
])
def test_a_window_beyond_the_bound_or_unreadable_is_refused_naming_the_field(query, field, words):
    with pytest.raises(InputError) as e:
        parse_window(query, NOW, 31)
    assert e.value.field == field and words in str(e.value) and str(e.value).startswith(f"{field}: ")


def test_rows_carry_sacct_figures_and_gpu_seconds_to_the_second():
    jobs = parse_history(SACCT)
    rows = {r["job_id"]: r for r in history_rows(jobs, "carme-resv-", {})}
    assert list(rows) == ["128", "80", "78", "40", "5", "2"]  # newest submission first
    booked = rows["78"]
    assert (booked["user"], booked["project"], booked["carme"], booked["server"]) == ("alice", "carme-dev", True, "")
    assert (booked["gpus"], booked["partition"], booked["reservation"], booked["node"]) == \
        (2, "interactive", "carme-itr1-alice", "carme-n2")
    assert booked["wait_s"] == 113 and booked["elapsed_s"] == 5 and booked["time_limit_minutes"] == 30
    assert booked["state"] == "CANCELLED" and booked["end_reason"] == "the job was cancelled"
    assert booked["gpu_seconds"] == 10 and booked["gpu_hours"] == round(10 / 3600, 6)
    assert booked["start"] == datetime(2026, 12, 2, 21, 27, 36).timestamp()
    timeout = rows["128"]
    assert timeout["state"] == "TIMEOUT" and timeout["gpu_seconds"] == 135 and not timeout["carme"]
    assert rows["80"]["gpus"] == 0 and rows["80"]["gpu_seconds"] == 0  # no GPU in its AllocTRES
    assert rows["40"]["exit_code"] == "15:0" and rows["40"]["end_reason"] == "the job failed"
    assert totals(rows.values())["gpu_seconds"] == 135 + 10 + 37 + 1


def test_the_image_comes_from_the_choices_carme_sessions_remembered(tmp_path):
    url = f"sqlite:///{tmp_path / 'carme-sessions.sqlite'}"
    assert remembered_choices(url, ["5"]) == {}  # no store there: no images, and none is created
    assert not (tmp_path / "carme-sessions.sqlite").exists()
    db = sessions_database(url)
    db.upgrade()
    SessionStore(db).remember([Choice("5", "alice", "exp2", {"image": "pytorch-gpu", "gpus": 1}, 1.0e9)])
    choices = remembered_choices(url, ["5", "40"])
    assert list(choices) == ["5"] and choices["5"].options["image"] == "pytorch-gpu"
    rows = {r["job_id"]: r for r in history_rows(parse_history(SACCT), "carme-labw-", choices)}
    assert (rows["5"]["image"], rows["5"]["server"], rows["5"]["carme"]) == ("pytorch-gpu", "exp2", True)
    assert rows["40"]["image"] == ""


def test_filters_and_their_refusals():
    rows = history_rows(parse_history(SACCT), "carme-resv-", {})
    assert [r["job_id"] for r in filter_rows(rows, parse_filters({"jobs": "all", "user": "alice"}))] == ["78", "5"]
    assert [r["job_id"] for r in filter_rows(rows, parse_filters({}))] == ["78"]  # Carme's jobs by default
    assert [r["job_id"] for r in filter_rows(rows, parse_filters({"jobs": "other", "state": "timeout,failed"}))] == \
        ["128", "80", "40"]
    assert filter_rows(rows, parse_filters({"jobs": "all", "project": "root"}))[0]["job_id"] == "2"
    for query, field in (({"state": "DONE"}, "state"), ({"user": "a b"}, "user"), ({"jobs": "mine"}, "jobs"),
                         ({"image": "<x>"}, "image")):
        with pytest.raises(InputError) as e:
            parse_filters(query)
        assert e.value.field == field


def test_the_csv_has_the_json_rows_columns_and_values():
    rows = history_rows(parse_history(SACCT), "carme-resv-", {})
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) == len(rows)
    for row, line in zip(rows, parsed, strict=True):
        for column in COLUMNS:
            value = row[column]
            if value is None:
                assert line[column] == ""
            elif isinstance(value, bool):
                assert line[column] == ("true" if value else "false")
            elif isinstance(value, (int, float)):
                assert float(line[column]) == value, column
            else:
                assert line[column] == value, column


def test_the_reader_asks_sacct_once_per_window_until_its_answer_is_old():
    calls = []

    async def fetch(window):
        calls.append(window)
        await asyncio.sleep(0.01)
        return parse_history(SACCT)

    async def main():
        reader = SacctReader(fetch, ttl=3600, max_entries=2)
        a, b = Window(datetime(2027, 1, 1), datetime(2027, 1, 2)), Window(datetime(2027, 1, 2), datetime(2027, 1, 3))
        first, second = await asyncio.gather(reader.read(a), reader.read(a))  # at once: one call
        assert first == second and len(calls) == 1
        await reader.read(b)
        await reader.read(Window(datetime(2027, 1, 3), datetime(2027, 1, 4)))  # a third: the oldest goes
        await reader.read(a)
        assert len(calls) == 4 and len(reader.cache) == 2
        reader.ttl = 0
        await reader.read(a)
        assert len(calls) == 5

    asyncio.run(main())


def test_charts_spread_gpu_hours_over_the_days_a_job_ran_and_count_waits():
    start = datetime(2027, 3, 1, 23, 0)
    rows = [{"project": "p1", "gpus": 2, "start": start.timestamp(), "elapsed_s": 7200, "wait_s": 30},
            {"project": "p2", "gpus": 1, "start": (start + timedelta(hours=2)).timestamp(), "elapsed_s": 3600,
             "wait_s": 4000},
            {"project": "p2", "gpus": 1, "start": None, "elapsed_s": 0, "wait_s": None}]  # pending: nothing
    window = Window(datetime(2027, 3, 1), datetime(2027, 3, 3))
    days, series = gpu_hours_by_day(rows, window)
    assert days == [datetime(2027, 3, 1), datetime(2027, 3, 2)]
    assert series == {"p1": [2.0, 2.0], "p2": [0.0, 1.0]}
    assert dict(wait_buckets(rows)) == {"< 1 min": 1, "1-5 min": 0, "5-15 min": 0, "15-60 min": 0, "1-4 h": 1,
                                        "> 4 h": 0}
    for svg in (gpu_hours_chart(rows, window), wait_chart(rows)):
        assert svg.startswith("<svg") and "<script" not in svg
    assert "p1" in gpu_hours_chart(rows, window)
