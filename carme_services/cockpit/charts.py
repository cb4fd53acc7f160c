"""The cockpit's charts (pure): figures from the history rows, drawn by pygal as SVG without scripts.

- `gpu_hours_by_day(rows, window, key)`: {project (or role, ...): [GPU-hours per day]}: each job's
  GPU-seconds (sacct's GPUs x ElapsedRaw) spread over the days it ran, from its start for ElapsedRaw s;
- `wait_buckets(rows)`: how many jobs waited how long in the queue (start - submit);
- `spawn_buckets(metrics_text)`: how many spawns took how long to ready, from the hub's histogram
  `carme_spawn_step_seconds{step="proxy route added"}` (since the hub started);
- `forecast_chart(forecast)`: free GPUs per type over the next days (`forecast.Forecast.to_dict()`);
- `utilisation_chart(jobs)`: each running job's GPU utilisation over time, from carme-culler's
  samples (the node's nvidia-smi, max over the job's GPUs); `idle_hours_chart(idle)`: GPU-hours held
  idle and busy per hour, from carme-culler's tally;
- `*_chart`: the SVG of each (carme_services.charts' look: pygal, no JavaScript).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pygal

from ..charts import STYLE, svg_without_scripts, bar_chart
from .history import Window

WAIT_BUCKETS = ((60, "< 1 min"), (300, "1-5 min"), (900, "5-15 min"), (3600, "15-60 min"), (4 * 3600, "1-4 h"),
                (None, "> 4 h"))
PALETTE = ("#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#6c757d", "#d63384", "#0dcaf0")
MAX_SERIES = 8  # more projects than this: the smallest are drawn together as "other"


def days_of(window: Window) -> list[datetime]:
    first = window.start.replace(hour=0, minute=0, second=0, microsecond=0)
    count = max(1, (window.end - first + timedelta(days=1) - timedelta(microseconds=1)).days)
    return [first + timedelta(days=i) for i in range(count)]


def gpu_hours_by_day(rows: Iterable[dict], window: Window, key: str = "project"
                     ) -> tuple[list[datetime], dict[str, list[float]]]:
    """(days, {row[key]: GPU-hours per day}) of the rows that ran, each day's share by overlap."""
    days = days_of(window)
    series: dict[str, list[float]] = {}
    for r in rows:
        if not r.get("start") or not r.get("elapsed_s") or not r.get("gpus"):
            continue
        start = datetime.fromtimestamp(r["start"])
        end = start + timedelta(seconds=r["elapsed_s"])
        values = series.setdefault(r.get(key) or "(none)", [0.0] * len(days))
        for i, day in enumerate(days):
            overlap = (min(end, day + timedelta(days=1)) - max(start, day)).total_seconds()
            if overlap > 0:
                values[i] += r["gpus"] * overlap / 3600
    ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    if len(ordered) > MAX_SERIES:
        rest = [sum(day) for day in zip(*(v for _, v in ordered[MAX_SERIES - 1:]), strict=True)]
        ordered = [*ordered[:MAX_SERIES - 1], ("other", rest)]
    return days, dict(ordered)


def wait_buckets(rows: Iterable[dict]) -> list[tuple[str, int]]:
    counts = [0] * len(WAIT_BUCKETS)
    for r in rows:
        wait = r.get("wait_s")
        if wait is None:
            continue
        index = next(i for i, (upper, _) in enumerate(WAIT_BUCKETS) if upper is None or wait < upper)
        counts[index] += 1
    return [(label, counts[i]) for i, (_, label) in enumerate(WAIT_BUCKETS)]


def gpu_hours_chart(rows: Iterable[dict], window: Window, key: str = "project") -> str:
    days, series = gpu_hours_by_day(rows, window, key)
    labels = [f"{d.day} {d:%b}" for d in days]
    style = STYLE.__class__(**{**STYLE.to_dict(), "colors": PALETTE})
    chart = pygal.StackedBar(style=style, height=280, width=760, js=[], disable_xml_declaration=True,
                             x_label_rotation=-45 if len(labels) > 12 else 0, truncate_label=-1, y_title="GPU-hours",
                             show_minor_x_labels=len(labels) <= 16, include_x_axis=True, legend_at_bottom=True,
                             truncate_legend=-1)
    chart.title = f"GPU-hours per day by {key}"
    chart.x_labels = labels
    chart.x_labels_major = labels[::max(1, len(labels) // 10)]
    for name, values in series.items() or [("(no jobs)", [0.0] * len(days))]:
        chart.add(name, [round(v, 3) for v in values])
    return svg_without_scripts(chart)


def wait_chart(rows: Iterable[dict]) -> str:
    buckets = wait_buckets(rows)
    return bar_chart("Queue wait (submit to start)", [b[0] for b in buckets], [b[1] for b in buckets], "jobs")


def forecast_chart(forecast: dict) -> str:
    """Free GPUs per type at each point of the forecast (if nothing new starts: an upper bound)."""
    times = [datetime.fromtimestamp(t) for t in forecast["times"]]
    labels = [f"{t:%a %H:%M}" for t in times]
    style = STYLE.__class__(**{**STYLE.to_dict(), "colors": PALETTE})
    chart = pygal.Line(style=style, height=260, width=760, js=[], disable_xml_declaration=True, show_dots=False,
                       x_label_rotation=-45, truncate_label=-1, y_title="free GPUs", include_x_axis=True,
                       show_minor_x_labels=False, legend_at_bottom=True, interpolate=None)
    chart.title = "Free GPUs ahead (running jobs to their time limit, reservations)"
    chart.x_labels = labels
    chart.x_labels_major = labels[::max(1, len(labels) // 12)]
    for gpu_type, values in sorted(forecast["free"].items()) or [("(no GPUs)", [0] * len(labels))]:
        chart.add(gpu_type, list(values))
    return svg_without_scripts(chart)


READY_STEP = "proxy route added"  # the spawner's last step: the server answers through the proxy


def spawn_buckets(metrics_text: str) -> list[tuple[str, int]]:
    """[(bucket label, spawns in it)] of the hub's spawn-to-ready histogram (Prometheus text; [] if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    cumulative = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "carme_spawn_step_seconds":
            continue
        cumulative = sorted(((float(s.labels["le"]), int(s.value)) for s in family.samples
                             if s.name.endswith("_bucket") and s.labels.get("step") == READY_STEP),
                            key=lambda b: b[0])
    rows, below, lower = [], 0, 0.0
    for upper, count in cumulative:
        label = f"> {lower:g} s" if upper == float("inf") else f"{lower:g}-{upper:g} s"
        rows.append((label, count - below))
        below, lower = count, upper
    return rows


def spawn_latency_chart(buckets: list[tuple[str, int]]) -> str:
    return bar_chart("Spawn to ready (since the hub started)", [b[0] for b in buckets], [b[1] for b in buckets],
                     "spawns")


def utilisation_series(jobs: Iterable[dict]) -> list[tuple[str, list[tuple[datetime, float]]]]:
    """[(label "JOB user/server", [(time, utilisation %)])] of the jobs with samples, busiest first, at most
    MAX_SERIES (the culler's api/samples answer: {job_id, user, server, samples: [{at, utilization}]})."""
    series = []
    for job in jobs:
        points = [(datetime.fromtimestamp(p["at"]), float(p["utilization"])) for p in job.get("samples") or ()]
        if points:
            label = f"{job['job_id']} {job['user']}/{job.get('server') or 'default'}"
            series.append((label, points, sum(u for _, u in points) / len(points)))
    series.sort(key=lambda s: (-s[2], s[0]))
    return [(label, points) for label, points, _ in series[:MAX_SERIES]]


def utilisation_chart(jobs: Iterable[dict], title: str = "GPU utilisation of running jobs") -> str:
    series = utilisation_series(jobs)
    times = [t for _, points in series for t, _ in points]
    span = (max(times) - min(times)).total_seconds() if times else 0
    fmt = "%H:%M:%S" if span < 600 else ("%H:%M" if span < 86400 else "%a %H:%M")
    style = STYLE.__class__(**{**STYLE.to_dict(), "colors": PALETTE})
    chart = pygal.DateTimeLine(style=style, height=260, width=760, js=[], disable_xml_declaration=True,
                               show_dots=False, x_label_rotation=-45, truncate_label=-1, y_title="GPU busy %",
                               range=(0, 100), include_x_axis=True, legend_at_bottom=True, truncate_legend=-1,
                               x_value_formatter=lambda t: t.strftime(fmt))
    chart.title = title
    for label, points in series or [("(no samples yet)", [])]:
        chart.add(label, points)
    return svg_without_scripts(chart)


def idle_hours_chart(idle: dict | None, hours: int = 48) -> str:
    """Idle and busy GPU-hours per hour of the last `hours` (carme-culler's api/idle answer)."""
    rows = (idle or {}).get("hours", [])[-hours:]
    labels = [f"{datetime.fromtimestamp(r['start']):%a %H:00}" for r in rows]
    style = STYLE.__class__(**{**STYLE.to_dict(), "colors": ("#dc3545", "#198754")})
    chart = pygal.StackedBar(style=style, height=260, width=760, js=[], disable_xml_declaration=True,
                             x_label_rotation=-45, truncate_label=-1, y_title="GPU-hours", include_x_axis=True,
                             show_minor_x_labels=len(labels) <= 16, legend_at_bottom=True)
    threshold = (idle or {}).get("threshold")
    chart.title = "GPU-hours held idle and busy per hour" + (f" (idle: below {threshold:g} %)" if threshold else "")
    chart.x_labels = labels
    chart.x_labels_major = labels[::max(1, len(labels) // 12)]
    chart.add("idle", [r["idle_gpu_hours"] for r in rows])
    chart.add("busy", [r["busy_gpu_hours"] for r in rows])
    return svg_without_scripts(chart)
