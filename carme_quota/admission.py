"""Admission (pure): may a spawn start now, under the user's effective limits and current use?

The spawner gathers `Usage` from the hub's SLURM view (the live job table and the cached
accounting snapshot: no SLURM call per spawn) and asks `admit()`. A refusal names the limit,
the use and the limit in plain words, and says when it resets or what would fit now. SLURM
holds the same limits (see `carme_quota.sacctmgr`); this check only explains them before Start,
and `explain_slurm_refusal()` puts SLURM's own refusals into the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from carme_slurm.accounting import AccountedJob, AssociationUsage
from carme_slurm.jobs import SlurmJob

from .limits import LIMIT_FIELDS, Limits

#: SLURM's PriorityUsageResetPeriod values Carme understands
RESET_PERIODS = ("NONE", "DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "YEARLY")


@dataclass(frozen=True)
class Usage:
    """A user's use that the limits are checked against."""

    servers: int  # live jobs (pending or running) of the user, every account, plus submissions in flight
    started_today: int  # Carme servers submitted since local midnight
    gpu_minutes_used: float = 0.0  # this period, in the job's association (sshare GrpTRESRaw)
    gpu_minutes_running: float = 0.0  # reserved by the association's running jobs (sshare TRESRunMins)
    resets_at: datetime | None = None  # when SLURM clears the period's usage (None: never)


def user_usage(
    user: str,
    account: str,
    jobs: Iterable[SlurmJob],
    usage: Mapping[str, AssociationUsage],
    recent_jobs: Iterable[AccountedJob],
    job_name_prefix: str,
    period: str,
    now: datetime,
    in_flight: Iterable[str] = (),
) -> Usage:
    """`user`'s use from SLURM's figures: live jobs in any account (and `in_flight` job ids not yet
    listed), the Carme servers submitted since midnight (accounting and the live queue, each job
    once), and the GPU-minutes of the association (`account`/`user`) this period."""
    jobs = [j for j in jobs if j.user == user]
    in_flight = set(in_flight)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = {j.job_id for j in recent_jobs
             if j.user == user and j.name.startswith(job_name_prefix) and j.submitted and j.submitted >= midnight}
    today |= {j.job_id for j in jobs if j.name.startswith(job_name_prefix) and j.submit_time >= midnight.timestamp()}
    association = usage.get(f"{account}/{user}")
    return Usage(
        servers=len({j.job_id for j in jobs if j.is_active} | in_flight),
        started_today=len(today | in_flight),
        gpu_minutes_used=association.gpu_minutes_used if association else 0.0,
        gpu_minutes_running=association.gpu_minutes_running if association else 0.0,
        resets_at=next_usage_reset(period, now),
    )


@dataclass(frozen=True)
class Refusal:
    limit: str  # a key of LIMIT_FIELDS
    use: float
    allowed: float
    message: str

    def to_dict(self) -> dict:
        return {**asdict(self), "label": LIMIT_FIELDS[self.limit][0]}


def admit(gpus: int, runtime_minutes: int, limits: Limits, usage: Usage) -> Refusal | None:
    """None if a server of `gpus` GPUs for `runtime_minutes` may start now; else the first limit it breaks."""
    if limits.gpus_per_job is not None and gpus > limits.gpus_per_job:
        return Refusal("gpus_per_job", gpus, limits.gpus_per_job,
                       f"GPUs per server: up to {limits.gpus_per_job}; this request asks for {gpus}.")
    if limits.max_runtime_minutes is not None and runtime_minutes > limits.max_runtime_minutes:
        return Refusal("max_runtime_minutes", runtime_minutes, limits.max_runtime_minutes,
                       f"runtime per server: up to {_duration(limits.max_runtime_minutes)}; "
                       f"this request asks for {_duration(runtime_minutes)}.")
    if limits.max_servers is not None and usage.servers >= limits.max_servers:
        return Refusal("max_servers", usage.servers, limits.max_servers,
                       f"servers at once: {usage.servers} of {limits.max_servers} are running or queued; "
                       "stop one to start another.")
    if limits.jobs_per_day is not None and usage.started_today >= limits.jobs_per_day:
        return Refusal("jobs_per_day", usage.started_today, limits.jobs_per_day,
                       f"servers started per day: {usage.started_today} of {limits.jobs_per_day} today; "
                       "the count starts again at midnight.")
    if limits.gpu_hours is not None and gpus > 0:
        return _gpu_hours(gpus, runtime_minutes, limits.gpu_hours, usage)
    return None


def admit_extension(gpus: int, limit_minutes: int, extra_minutes: int, limits: Limits, usage: Usage) -> Refusal | None:
    """None if a running server of `gpus` GPUs whose time limit is `limit_minutes` may run
    `extra_minutes` longer: the new limit within the runtime per server, the extra GPU-minutes
    within what the period's budget has left (SLURM already holds the job's current limit)."""
    total = limit_minutes + extra_minutes
    if limits.max_runtime_minutes is not None and total > limits.max_runtime_minutes:
        return Refusal("max_runtime_minutes", total, limits.max_runtime_minutes,
                       f"runtime per server: up to {_duration(limits.max_runtime_minutes)}; this server has "
                       f"{_duration(limit_minutes)}, +{_duration(extra_minutes)} would make {_duration(total)}.")
    left = minutes_left(limits, usage)
    if left is not None and gpus > 0 and gpus * extra_minutes > left:
        return Refusal("gpu_hours", round((usage.gpu_minutes_used + usage.gpu_minutes_running) / 60, 2),
                       limits.gpu_hours, f"GPU-hours: +{_duration(extra_minutes)} on {gpus} GPU needs "
                       f"{_hours(gpus * extra_minutes / 60)}, {_hours(max(0.0, left) / 60)} are left this period.")
    return None


def minutes_left(limits: Limits, usage: Usage) -> float | None:
    """GPU-minutes still free this period (None: no budget): SLURM counts what running jobs hold."""
    if limits.gpu_hours is None:
        return None
    return limits.gpu_hours * 60 - usage.gpu_minutes_used - usage.gpu_minutes_running


def _gpu_hours(gpus: int, runtime_minutes: int, budget_hours: float, usage: Usage) -> Refusal | None:
    # SLURM checks GrpTRESMins against used + reserved by running jobs + this job's whole request
    used = usage.gpu_minutes_used / 60
    reserved = usage.gpu_minutes_running / 60
    left_minutes = minutes_left(Limits(gpu_hours=budget_hours), usage)
    if gpus * runtime_minutes <= left_minutes:
        return None
    resets = f", resets {_day(usage.resets_at)}" if usage.resets_at else ""
    state = f"GPU-hours: {_hours(used)} used" + (f" and {_hours(reserved)} held by running servers" if reserved else "")
    state += f" of {_hours(budget_hours)}{resets}"
    asked = f"this request needs {_hours(gpus * runtime_minutes / 60)} ({gpus} GPU for {_duration(runtime_minutes)})"
    fits = [f"{n} GPU for up to {_duration(int(left_minutes // n))}"
            for n in range(gpus, 0, -1) if left_minutes // n >= 1]
    advice = f"What would fit now: {' or '.join(fits[:2])}." if fits else "No GPU time is left this period."
    return Refusal("gpu_hours", round(used + reserved, 2), budget_hours, f"{state}; {asked}. {advice}")


def next_usage_reset(period: str, now: datetime) -> datetime | None:
    """When SLURM next clears usage for PriorityUsageResetPeriod `period` (slurm.conf's rules)."""
    period = check_period(period)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "NONE":
        return None
    if period == "DAILY":
        return midnight + timedelta(days=1)
    if period == "WEEKLY":  # Sundays at 00:00
        return midnight + timedelta(days=(6 - now.weekday()) or 7)
    months = {"MONTHLY": 1, "QUARTERLY": 3, "YEARLY": 12}[period]
    month0 = (now.month - 1) // months * months + months  # months since January of the next reset
    year, month = now.year + month0 // 12, month0 % 12 + 1
    return midnight.replace(year=year, month=month, day=1)


def usage_period_start(period: str, now: datetime) -> datetime | None:
    """When the current usage period began (the last reset; None for NONE)."""
    period = period.upper()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "NONE":
        return None
    if period == "DAILY":
        return midnight
    if period == "WEEKLY":  # Sundays at 00:00
        return midnight - timedelta(days=(now.weekday() + 1) % 7)
    months = {"MONTHLY": 1, "QUARTERLY": 3, "YEARLY": 12}[check_period(period)]
    return midnight.replace(month=(now.month - 1) // months * months + 1, day=1)


def check_period(period: str) -> str:
    if period.upper() not in RESET_PERIODS:
        raise ValueError(f"usage reset period: must be one of {', '.join(RESET_PERIODS)}, got {period!r:.40}")
    return period.upper()


#: SLURM's reasons for refusing or holding a job over a limit, by the limit they stand for
_SLURM_REASONS = {
    "gpus_per_job": ("MaxTRESPerJob", "MaxGRESPerJob", "QOSMaxGRESPerJob", "AssocMaxGRESPerJob"),
    "max_servers": ("MaxSubmitJob", "MaxJobs", "MaxSubmitJobsPerUser", "QOSMaxSubmitJobPerUser",
                    "AssocMaxSubmitJob", "AssocMaxJobsLimit", "QOSMaxJobsPerUser"),
    "gpu_hours": ("GrpTRESMins", "GrpGRESMinutes", "AssocGrpGRESMinutes", "AssocGrpGRESRunMinutes"),
    "max_runtime_minutes": ("MaxWall", "AssocMaxWallDurationPerJob", "QOSMaxWallDurationPerJob",
                            "time limit"),
}


def explain_slurm_refusal(message: str) -> str | None:
    """Plain words for SLURM's refusal of a job over a Carme limit; None if it is about something else."""
    for limit, markers in _SLURM_REASONS.items():
        if any(re.search(re.escape(m), message, re.IGNORECASE) for m in markers):
            return (f"SLURM refused the server: it is over your limit of {LIMIT_FIELDS[limit][0]}. "
                    "Your limits and use are shown on the spawn page.")
    return None


def _hours(hours: float) -> str:
    return f"{hours:.1f}".rstrip("0").rstrip(".") if hours < 100 else f"{hours:.0f}"


def _duration(minutes: int) -> str:
    hours, rest = divmod(int(minutes), 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _day(when: datetime | date) -> str:
    return f"{when.day} {when:%b}"
