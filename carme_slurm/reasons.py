"""SLURM's job reasons and end states in words a researcher understands (pure).

The spawn's progress (`carme_spawner.progress`) and the services' pages (the session cards of
`carme_services.sessions`) say the same things in the same words: a pending job's reason
(squeue's `%r`) and why a job is over (its final state).
"""

from __future__ import annotations

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

#: SLURM's final job states in words
END_STATES = {
    "COMPLETED": "the server exited by itself",
    "CANCELLED": "the job was cancelled",
    "TIMEOUT": "it reached its time limit",
    "FAILED": "the job failed",
    "NODE_FAIL": "node failure: its node stopped answering SLURM",
    "OUT_OF_MEMORY": "it ran out of memory",
    "PREEMPTED": "it was preempted by a job with higher priority",
    "BOOT_FAIL": "its node did not boot",
    "DEADLINE": "it reached its deadline",
    "REVOKED": "another cluster of the federation ran it",
}


def describe_reason(reason: str) -> str:
    return PENDING_REASONS.get(reason, f"SLURM says: {reason}")


def describe_end_state(state: str) -> str:
    """Why a job with final state `state` is over ("CANCELLED by 0" reads as CANCELLED)."""
    state = (state or "").split()[0] if (state or "").strip() else ""
    return END_STATES.get(state, f"SLURM says: {state or 'no state'}")
