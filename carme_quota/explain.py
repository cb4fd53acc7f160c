"""The user's limits and use in plain words, for the spawn form (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .admission import Usage
from .disk import DiskUse, over_words, use_words
from .limits import Limits

PERIOD_WORDS = {"DAILY": "today", "WEEKLY": "this week", "MONTHLY": "this month", "QUARTERLY": "this quarter",
                "YEARLY": "this year", "NONE": "in total"}


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def form_lines(limits: Limits, usage: Usage, period: str, project_gpus: Mapping[str, int | None] | None = None) -> list[str]:
    """What the form shows next to the fields, e.g. "GPU-hours this month: 12.5 of 100, resets 1 Jan",
    "servers: 1 of 2", "GPUs per server: up to 2 (your project vision allows 4)". `project_gpus`:
    the GPUs per server each of the user's projects allows (None: no limit there)."""
    lines = []
    if limits.gpu_hours is not None:
        used = (usage.gpu_minutes_used + usage.gpu_minutes_running) / 60
        resets = f", resets {usage.resets_at.day} {usage.resets_at:%b}" if usage.resets_at else ""
        lines.append(f"GPU-hours {PERIOD_WORDS.get(period.upper(), 'this period')}: {_number(used)} of "
                     f"{_number(limits.gpu_hours)}{resets}")
    if limits.max_servers is not None:
        lines.append(f"servers: {usage.servers} of {limits.max_servers}")
    if limits.jobs_per_day is not None:
        lines.append(f"servers started today: {usage.started_today} of {limits.jobs_per_day}")
    if limits.gpus_per_job is not None:
        more = [(name, gpus) for name, gpus in (project_gpus or {}).items()
                if gpus is None or gpus > limits.gpus_per_job]
        hint = "".join(f" (your project {name} allows {'any number' if gpus is None else gpus})" for name, gpus in more[:2])
        lines.append(f"GPUs per server: up to {limits.gpus_per_job}{hint}")
    if limits.max_runtime_minutes is not None:
        hours, minutes = divmod(limits.max_runtime_minutes, 60)
        lines.append(f"runtime per server: up to {hours} h" + (f" {minutes} min" if minutes else ""))
    return lines


def disk_lines(disk: Iterable[DiskUse]) -> list[str]:
    """The disk pass's last reading in words: "disk (global file system): 12.0 of 10.0 GiB, ..." and,
    over a limit, why writes may fail."""
    lines = []
    for use in disk:
        what = "disk (global file system)" if use.kind == "user" else f"disk of project {use.name}"
        lines.append(f"{what}: {use_words(use)}")
        if over_words(use):
            lines.append(over_words(use))
    return lines
