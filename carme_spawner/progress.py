"""Plain-words descriptions of SLURM job state, for spawn progress and failure messages (pure)."""

from __future__ import annotations

import datetime

from carme_slurm import SlurmJob

#: SLURM's pending reasons (squeue %r) in words a researcher understands
PENDING_REASONS = {
    "None": "waiting for the scheduler's next pass",
    "Priority": "other jobs with higher priority are ahead in the queue",
    "Resources": "waiting for GPUs/CPUs/memory to become free",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionTimeLimit": "the requested time exceeds the partition's limit",
    "PartitionNodeLimit": "the requested node count exceeds the partition's limit",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "Reservation": "waiting for its reservation to start",
    "BeginTime": "its start time has not been reached",
    "Dependency": "waiting for another job to finish",
    "DependencyNeverSatisfied": "a job it depends on failed; it will never start",
    "JobHeldUser": "held by you",
    "JobHeldAdmin": "held by an administrator",
    "QOSMaxGRESPerUser": "you already use as many GPUs as your quality of service allows",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your quality of service allows",
    "AssocGrpGRES": "your group already uses all GPUs it may",
    "AssocMaxJobsLimit": "you already run as many jobs as your account allows",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "its constraints cannot be satisfied",
    "InvalidQOS": "its quality of service is invalid",
    "InvalidAccount": "its account is invalid",
}


def describe_reason(reason: str) -> str:
    return PENDING_REASONS.get(reason, f"SLURM says: {reason}")


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
    return text + "."
