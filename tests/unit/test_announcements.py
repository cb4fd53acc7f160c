"""Announcements (issue 23): a new notice's checks, the file the hub reads (atomic writes, the mtime cache,
start <= now < expiry), the escaped HTML of page.html's `announcement`, and how the hub's template_vars join."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from carme_core import announcements as hub_side
from carme_services.announcements.notices import (
    NoticeError,
    NoticeLimits,
    is_duration,
    parse_duration,
    parse_notice,
    parse_time,
)
from carme_services.wiring import JoinedTemplateVar, joined_template_var

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)
T0 = NOW.timestamp()


def refused(body: dict, field: str, words: str = "", limits: NoticeLimits = NoticeLimits()) -> str:
    with pytest.raises(NoticeError) as e:
        parse_notice(body, NOW, limits)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ") and words in str(e.value)
    return str(e.value)


# ---- the checks ------------------------------------------------------------------------------------

def test_a_notice_with_a_zone_an_expiry_and_a_severity_is_taken_as_utc():
    n = parse_notice({"severity": "warning", "text": "  carme-n2 drained Friday 08:00-12:00 \n",
                      "start": "2026-12-04T08:00:00+01:00", "expiry": "2026-12-04T12:00:00+01:00"}, NOW)
    assert (n.severity, n.text) == ("warning", "carme-n2 drained Friday 08:00-12:00")
    assert n.start == datetime(2026, 12, 4, 7, 0, tzinfo=timezone.utc)
    assert n.expiry == datetime(2026, 12, 4, 11, 0, tzinfo=timezone.utc)


def test_defaults_start_now_severity_info_and_a_duration_counts_from_the_start():
    n = parse_notice({"text": "hello", "duration": 7200}, NOW)
    assert (n.severity, n.start, n.expiry) == ("info", NOW, NOW + timedelta(hours=2))
    n = parse_notice({"text": "x", "start": "2026-12-05T00:00:00Z", "duration": 60.5}, NOW)
    assert n.expiry - n.start == timedelta(seconds=61)  # rounded up to the second
    n = parse_notice({"text": "x", "start": T0 + 60, "expiry": T0 + 120}, NOW)  # epoch seconds
    assert (n.start, n.expiry) == (NOW + timedelta(seconds=60), NOW + timedelta(seconds=120))


@pytest.mark.parametrize("body, field, words", [
    ({"text": "x", "duration": 60, "colour": "red"}, "colour", "unknown field"),
    ({"text": "x", "duration": 60, "severity": "critical"}, "severity", "info, warning, danger"),
    ({"duration": 60}, "text", "must be text"),
    ({"text": "   \n ", "duration": 60}, "text", "is empty"),
    ({"text": "x" * 501, "duration": 60}, "text", "at most 500 characters, not 501"),
    ({"text": "bell\x07", "duration": 60}, "text", "U+0007"),
    ({"text": "rtl\u202eoverride", "duration": 60}, "text", "U+202E"),
    ({"text": "x", "start": "tomorrow", "duration": 60}, "start", "not an ISO 8601 time"),
    ({"text": "x", "start": "2026-12-04T08:00", "duration": 60}, "start", "no time zone"),
    ({"text": "x", "start": True, "duration": 60}, "start", "must be a time"),
    ({"text": "x", "start": "2028-12-04T08:00Z", "duration": 60}, "start", "at most 365 days ahead"),
    ({"text": "x"}, "expiry", "one of them"),
    ({"text": "x", "expiry": "2026-12-04T08:00Z", "duration": 60}, "expiry", "one of them"),
    ({"text": "x", "start": "2026-12-04T08:00Z", "expiry": "2026-12-04T08:00Z"}, "expiry", "must be after the start"),
    ({"text": "x", "start": "2026-12-04T08:00Z", "expiry": "2026-12-04T07:00Z"}, "expiry", "must be after the start"),
    ({"text": "x", "start": "2026-12-01T08:00Z", "expiry": "2026-12-02T08:00Z"}, "expiry", "in the past"),
    ({"text": "x", "expiry": "2027-02-01T00:00Z"}, "expiry", "at most 31 days after the start"),
    ({"text": "x", "duration": 0}, "duration", "more than 0"),
    ({"text": "x", "duration": -5}, "duration", "more than 0"),
    ({"text": "x", "duration": "2h"}, "duration", "number of seconds"),
    ({"text": "x", "duration": float("inf")}, "duration", "number of seconds"),
    ({"text": "x", "duration": 40 * 86400}, "duration", "at most 31 days"),
])
def test_bad_input_is_refused_naming_the_field(body, field, words):
    refused(body, field, words)


def test_the_limits_are_the_services_settings():
    limits = NoticeLimits(max_text_length=10, max_duration_days=1, max_start_ahead_days=2)
    refused({"text": "x" * 11, "duration": 60}, "text", "at most 10", limits)
    refused({"text": "x", "duration": 86401}, "duration", "at most 1 days", limits)
    refused({"text": "x", "start": "2026-12-06T10:00:01Z", "duration": 60}, "start", "at most 2 days", limits)


def test_html_is_kept_as_text_by_the_checks_and_newlines_stay():
    n = parse_notice({"text": "<b>bold</b>\r\nline two  ", "duration": 60}, NOW)
    assert n.text == "<b>bold</b>\nline two"


def test_durations_and_times():
    assert [parse_duration(t) for t in ("90s", "30m", "2h", "7d", "1w", "1h30m", "1.5h")] == \
        [90, 1800, 7200, 604800, 604800, 5400, 5400]
    assert is_duration("2h") and not is_duration("2026-12-04") and not is_duration("h")
    with pytest.raises(NoticeError, match="expires: '2 hours' is not a duration"):
        parse_duration("2 hours", "expires")
    assert parse_time("2026-12-04T08:00:00.123456z", "start") == datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)
    with pytest.raises(NoticeError, match="start: .* is not a time in epoch seconds"):
        parse_time(-1, "start")


# ---- the file and what the hub shows ----------------------------------------------------------------

def notice(id, start, expiry, severity="warning", text="maintenance"):
    return {"id": id, "severity": severity, "text": text, "start": start, "expiry": expiry}


def test_the_file_is_written_atomically_world_readable_and_read_back(tmp_path):
    path = tmp_path / hub_side.FILE_NAME
    hub_side.write_notices(path, [notice(1, T0, T0 + 60)], now=T0)
    assert path.stat().st_mode & 0o777 == 0o644
    assert json.loads(path.read_text())["announcements"] == [notice(1, T0, T0 + 60)]
    assert [p.name for p in tmp_path.iterdir()] == [hub_side.FILE_NAME]  # no temporary file left
    assert hub_side.NoticeFile(path).notices() == [notice(1, T0, T0 + 60)]


def test_only_notices_between_their_start_and_expiry_are_current(tmp_path):
    path = tmp_path / "n.json"
    hub_side.write_notices(path, [notice(1, T0, T0 + 60), notice(2, T0 + 30, T0 + 90, "danger"),
                                  notice(3, T0 - 100, T0 - 1)])
    source = hub_side.NoticeFile(path)
    assert [n["id"] for n in source.current(T0 - 1)] == []
    assert [n["id"] for n in source.current(T0)] == [1]  # start <= now
    assert [n["id"] for n in source.current(T0 + 30)] == [2, 1]  # the most severe first
    assert [n["id"] for n in source.current(T0 + 60)] == [2]  # now < expiry
    assert [n["id"] for n in source.current(T0 + 90)] == []


def test_the_file_is_read_again_only_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "n.json"
    hub_side.write_notices(path, [notice(1, T0, T0 + 60)])
    source = hub_side.NoticeFile(path)
    reads = []
    original = hub_side.NoticeFile._read
    monkeypatch.setattr(hub_side.NoticeFile, "_read", lambda self, key: reads.append(key) or original(self, key))
    for _ in range(5):
        assert [n["id"] for n in source.current(T0)] == [1]
    assert len(reads) == 1
    hub_side.write_notices(path, [notice(2, T0, T0 + 60)])  # a new file (rename): another inode
    assert [n["id"] for n in source.current(T0)] == [2] and len(reads) == 2
    path.unlink()
    assert source.current(T0) == [] and len(reads) == 2


def test_a_missing_broken_or_odd_file_shows_nothing_and_bad_entries_are_dropped(tmp_path, caplog):
    path = tmp_path / "n.json"
    source = hub_side.NoticeFile(path)
    assert source.current(T0) == []
    path.write_text("{not json")
    assert source.current(T0) == [] and "ignoring" in caplog.text
    path.write_text(json.dumps({"announcements": [
        notice(1, T0, T0 + 60), notice(2, T0, T0 + 60, severity="<script>"), notice(3, T0 + 60, T0),
        {"id": 4, "severity": "info", "text": "", "start": T0, "expiry": T0 + 60}, "nonsense",
        {"id": 5, "severity": "info", "text": "x", "start": "soon", "expiry": T0 + 60}]}))
    assert [n["id"] for n in source.current(T0)] == [1] and "ignored 5 malformed" in caplog.text


def test_the_html_escapes_every_text_and_marks_the_severity():
    html = hub_side.notices_html([notice(7, T0, T0 + 1, "danger", '<img src=x onerror="alert(1)"> & more\nline 2')])
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; more<br>line 2" in html
    assert 'data-severity="danger"' in html and "text-bg-danger" in html and 'data-announcement-id="7"' in html
    assert hub_side.notices_html([]) == ""


def test_template_vars_render_for_a_user_and_nothing_for_nobody(tmp_path):
    path = tmp_path / "n.json"
    hub_side.write_notices(path, [notice(1, T0, T0 + 60, text="drain <Friday>")])
    clock = [T0]
    names = hub_side.template_vars(path, clock=lambda: clock[0])
    assert set(names) == {"announcement", "announcement_spawn", "announcement_home"}
    shown = names["announcement_spawn"](object())
    assert "drain &lt;Friday&gt;" in shown and isinstance(shown, str)
    assert names["announcement"](None) == ""  # the login page: nobody logged in
    clock[0] = T0 + 60
    assert names["announcement_home"](object()) == ""  # expired
    assert hub_side.current_html(None) == "" and hub_side.current_html(path, T0) == hub_side.notices_html(
        [notice(1, T0, T0 + 60, text="drain <Friday>")])


def test_a_sites_own_announcement_stays_before_the_services_notices():
    assert joined_template_var(None, str.upper) is str.upper and joined_template_var("", str.upper) is str.upper
    joined = joined_template_var("<p>site</p>", lambda user: f"<p>{user}</p>")
    assert isinstance(joined, JoinedTemplateVar) and joined("carol") == "<p>site</p><p>carol</p>"
    both = joined_template_var(lambda user: "", lambda user: "ours")
    assert both("x") == "ours"


def test_the_writer_replaces_by_rename(tmp_path, monkeypatch):
    path = tmp_path / "n.json"
    path.write_text("old")
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renames.append((a, b)) or real(a, b))
    hub_side.write_notices(path, [])
    assert len(renames) == 1 and renames[0][1] == path and json.loads(path.read_text())["announcements"] == []


def test_the_hub_may_deep_copy_its_config_with_the_pages_variables(tmp_path):
    import copy

    names = hub_side.template_vars(tmp_path / "n.json")
    copied = copy.deepcopy({"template_vars": names})["template_vars"]
    assert copied["announcement"] is names["announcement"]
    joined = copy.deepcopy(joined_template_var("<p>site</p>", names["announcement"]))
    assert joined(object()) == "<p>site</p>"
