"""The cockpit's job history (pure): SLURM's accounting (`sacct`) of a bounded window as rows.

    window = parse_window({"start": "7d"}, now, max_days=31)     # InputError naming start/end
    argv   = sacct_argv(window)                                    # sacct -a -X -P -S .. -E .. -o ..
    jobs   = parse_history(text)                                   # carme_slurm's parse_sacct + 4 columns
    rows   = history_rows(jobs, prefix, choices)                   # one row per job
    rows   = filter_rows(rows, parse_filters(query))               # user, project, image, state, carme
    text   = to_csv(rows)                                          # the same columns as the JSON rows

Every figure is sacct's: GPUs (`AllocTRES`), submit/start/end, run time (`ElapsedRaw`), state
and exit code; `gpu_seconds` = GPUs x ElapsedRaw exactly, `gpu_hours` = that / 3600. The image is
not in SLURM (22.05 stores no job comment by default): it comes from the choices carme-sessions
remembered for the job (`carme_services.sessions.history.Choice`), "" when nobody saw it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from carme_slurm.accounting import SACCT_FIELDS, AccountedJob, parse_sacct, sacct_rows
from carme_slurm.jobs import ACTIVE_STATES, TERMINAL_STATES
from carme_slurm.reasons import describe_end_state

from ..sessions.history import Choice
from .errors import InputError

#: what the cockpit asks sacct for: carme_slurm's columns, then what only the cockpit shows
EXTRA_FIELDS = ("Partition", "Reservation", "Reason", "TimelimitRaw")
HISTORY_FIELDS = (*SACCT_FIELDS, *EXTRA_FIELDS)
STATES = tuple(sorted(TERMINAL_STATES | ACTIVE_STATES))
COLUMNS = ("job_id", "user", "project", "carme", "server", "image", "gpus", "partition", "reservation", "node",
           "submitted", "start", "end", "wait_s", "elapsed_s", "time_limit_minutes", "state", "exit_code",
           "end_reason", "gpu_seconds", "gpu_hours")
_RELATIVE = re.compile(r"([0-9]{1,4})([dhm])", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,255}", re.ASCII)


@dataclass(frozen=True)
class Window:
    """[start, end) in the hub host's local time, whole minutes (sacct reads local times)."""

    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "days": round(self.days, 4)}


def _moment(field: str, value: str, now: datetime, is_end: bool) -> datetime:
    """`7d` / `12h` / `30m` before now, an ISO date (an end date counts whole: up to its midnight) or
    an ISO date and time."""
    value = value.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    if value == "now":
        return now
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value)
            return day + timedelta(days=1) if is_end else day
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(field, "must be a date (2027-01-31), a date and time (2027-01-31T08:00), now, "
                                "or a time before now (7d, 12h, 30m)") from None
    if moment.tzinfo is not None:  # local time, as sacct reads it
        moment = moment.astimezone().replace(tzinfo=None)
    return moment


def parse_window(query: Mapping[str, str], now: datetime, max_days: float, default_days: float = 7) -> Window:
    """The window of `query` (start, end; default the last `default_days`), at most `max_days` long."""
    end = _moment("end", query["end"], now, True) if query.get("end") else now
    start = _moment("start", query["start"], now, False) if query.get("start") else end - timedelta(days=default_days)
    end = min(end, now)
    start = start.replace(second=0, microsecond=0)
    end = (end + timedelta(seconds=59)).replace(second=0, microsecond=0)  # to the minute: repeated asks share a read
    if start >= end:
        raise InputError("start", f"must be before end ({end.isoformat()})")
    if (end - start) > timedelta(days=max_days):
        raise InputError("start", f"the window may span at most {max_days:g} days (sacct is asked for bounded "
                                  f"windows only); {start.isoformat()} to {end.isoformat()} is "
                                  f"{(end - start).total_seconds() / 86400:.1f} days")
    return Window(start, end)


def sacct_argv(window: Window) -> list[str]:
    """All users' allocations (no steps) that ran or waited in `window`."""
    return ["sacct", "-a", "-X", "-P", "-S", window.start.strftime("%Y-%m-%dT%H:%M:%S"),
            "-E", window.end.strftime("%Y-%m-%dT%H:%M:%S"), "-o", ",".join(HISTORY_FIELDS)]


@dataclass(frozen=True)
class HistoryJob:
    """A job as `carme_slurm.accounting.parse_sacct` reads it, with the cockpit's four columns."""

    job: AccountedJob
    partition: str = ""
    reservation: str = ""
    reason: str = ""
    time_limit_minutes: int | None = None


def parse_history(text: str) -> list[HistoryJob]:
    """`sacct ... -o HISTORY_FIELDS` output (the columns found by their header names)."""
    extras = {row["JobID"].strip(): row for row in sacct_rows(text, ("JobID",)) if row["JobID"].strip()}
    found = []
    for job in parse_sacct(text):
        row = extras.get(job.job_id, {})
        limit = (row.get("TimelimitRaw") or "").strip()
        found.append(HistoryJob(job, (row.get("Partition") or "").strip(), (row.get("Reservation") or "").strip(),
                                (row.get("Reason") or "").strip(), int(limit) if limit.isdigit() else None))
    return found


def _carme_server(name: str, user: str, prefix: str) -> str | None:
    """The server slug of a Carme job name (`<prefix><user>[-<slug>]`), None for another job."""
    head = f"{prefix}{user}"
    if not prefix or not name.startswith(head):
        return None
    rest = name[len(head):]
    if rest == "":
        return ""
    return rest[1:] if rest.startswith("-") else None


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def history_row(h: HistoryJob, prefix: str, choice: Choice | None) -> dict:
    job = h.job
    slug = _carme_server(job.name, job.user, prefix)
    options = dict(choice.options) if choice else {}
    ended = job.state not in ACTIVE_STATES and job.state != ""
    gpu_seconds = round(job.gpus * job.elapsed_s)
    return {
        "job_id": job.job_id, "user": job.user, "project": job.account, "name": job.name,
        "carme": slug is not None,
        "server": choice.server if choice else (slug or ""),
        "image": str(options.get("image") or ""),
        "gpus": job.gpus if job.gpus != int(job.gpus) else int(job.gpus),
        "partition": h.partition, "reservation": h.reservation,
        "node": job.nodes if job.nodes != "None assigned" else "",
        "submitted": _epoch(job.submitted), "start": _epoch(job.started), "end": _epoch(job.ended),
        "wait_s": int((job.started - job.submitted).total_seconds()) if job.started and job.submitted else None,
        "elapsed_s": job.elapsed_s, "time_limit_minutes": h.time_limit_minutes,
        "state": job.state, "exit_code": job.exit_code,
        "end_reason": describe_end_state(job.state) if ended else (h.reason if job.state == "PENDING" else ""),
        "gpu_seconds": gpu_seconds, "gpu_hours": round(gpu_seconds / 3600, 6),
    }


def history_rows(jobs: Iterable[HistoryJob], prefix: str, choices: Mapping[str, Choice]) -> list[dict]:
    """One row per job, newest submission first."""
    rows = [history_row(h, prefix, choices.get(h.job.job_id)) for h in jobs]
    return sorted(rows, key=lambda r: (r["submitted"] or 0, _number(r["job_id"])), reverse=True)


def _number(job_id: str) -> int:
    head = job_id.split("_")[0].split("+")[0]
    return int(head) if head.isdigit() else 0


# ---- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    user: str = ""
    project: str = ""
    image: str = ""
    states: tuple[str, ...] = ()
    jobs: str = "carme"  # carme: Carme's jobs; other: the rest; all

    def to_dict(self) -> dict:
        return {"user": self.user, "project": self.project, "image": self.image, "state": ",".join(self.states),
                "jobs": self.jobs}


def parse_filters(query: Mapping[str, str]) -> Filters:
    values = {}
    for field in ("user", "project", "image"):
        value = (query.get(field) or "").strip()
        if value and not _NAME.fullmatch(value):
            raise InputError(field, "must be a name (letters, digits, . _ @ + -)")
        values[field] = value
    states = tuple(s.strip().upper() for s in (query.get("state") or "").split(",") if s.strip())
    for state in states:
        if state not in STATES:
            raise InputError("state", f"{state!r} is not a SLURM job state (e.g. COMPLETED, CANCELLED, TIMEOUT, "
                                      "FAILED, RUNNING, PENDING)")
    jobs = (query.get("jobs") or "carme").strip()
    if jobs not in ("carme", "other", "all"):
        raise InputError("jobs", "must be carme, other or all")
    return Filters(states=states, jobs=jobs, **values)


def filter_rows(rows: Iterable[dict], f: Filters) -> list[dict]:
    def keep(r: dict) -> bool:
        return ((f.jobs == "all" or r["carme"] == (f.jobs == "carme"))
                and (not f.user or r["user"] == f.user) and (not f.project or r["project"] == f.project)
                and (not f.image or r["image"] == f.image) and (not f.states or r["state"] in f.states))
    return [r for r in rows if keep(r)]


def totals(rows: Iterable[dict]) -> dict:
    rows = list(rows)
    gpu_seconds = sum(r["gpu_seconds"] for r in rows)
    return {"jobs": len(rows), "gpu_seconds": gpu_seconds, "gpu_hours": round(gpu_seconds / 3600, 6)}


# ---- CSV ----------------------------------------------------------------------------------------


def csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(rows: Iterable[dict]) -> str:
    """The rows as CSV with a header: COLUMNS, values as in the JSON (none: empty, booleans true/false)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([csv_value(r.get(c)) for c in COLUMNS])
    return out.getvalue()
