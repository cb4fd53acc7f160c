"""Plain-words descriptions of SLURM job state, for spawn progress and failure messages (pure)."""

from __future__ import annotations

import datetime

from carme_slurm import SlurmJob
from carme_slurm.reasons import PENDING_REASONS, describe_end_state, describe_reason


def format_time(epoch: int, now: float | None = None) -> str:
    """'14:05 (in 12 min)' style, local time of the hub."""
    moment = datetime.datetime.fromtimestamp(epoch)
    if now is None:
        now = datetime.datetime.now().timestamp()
    minutes = round((epoch - now) / 60)
    when = moment.strftime("%H:%M") if abs(epoch - now) < 86400 else moment.strftime("%Y-%m-%d %H:%M")
    if minutes <= 0:
        return f"{when} (any moment now)"
    if minutes < 120:
        return f"{when} (in {minutes} min)"
    return f"{when} (in {minutes / 60:.1f} h)"


def describe_pending(job: SlurmJob, now: float | None = None, position: tuple[int, int] = (0, 0)) -> str:
    """`position`: (this job's place, how many) among Carme's pending jobs in the partition."""
    text = f"Job {job.job_id} is queued in partition {job.partition}: {describe_reason(job.reason)}"
    if job.start_time and job.start_time > (now or 0):
        text += f"; SLURM expects it to start at {format_time(job.start_time, now)}"
    place, count = position
    if place and count > 1:
        text += f"; number {place} of {count} Carme jobs waiting there"
    return text + "."


def describe_running(job: SlurmJob) -> str:
    return f"Job {job.job_id} is running on {job.batch_host or job.nodes}; starting JupyterLab in the container."


def describe_end(job: SlurmJob | None, job_id: str) -> str:
    """Why a job is over, from SLURM's own words (or its absence)."""
    if job is None:
        return f"SLURM job {job_id} is no longer known to SLURM (it ended or was removed)."
    text = f"SLURM job {job_id} ended: {job.state}"
    if job.reason and job.reason != "None" and job.reason not in PENDING_REASONS:
        text += f" ({job.reason})"  # e.g. NonZeroExitCode, TimeLimit; a stale pending reason is not news
    if job.exit_signal:
        text += f", killed by signal {job.exit_signal}"
    elif job.exit_status is not None:
        text += f", exit code {job.exit_status}"
    if job.state.split()[0] in ("NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED", "TIMEOUT"):
        text += f" ({describe_end_state(job.state)})"  # words for what SLURM's state name only hints at
    return text + "."
