"""The session history (pure): a user's recent Carme jobs from SLURM's accounting, joined with the
choices the service remembered, and which choices a relaunch uses.

Every figure of a row is sacct's (the hub's view reads `sacct -X` of the last
`SlurmView.accounting_window_days`): GPUs (`AllocTRES`), start, end, run time (`ElapsedRaw`), the
final state and exit code. GPU-hours are sacct's GPUs x its run time, never a figure of Carme's.
What SLURM does not know (the image, the GPU type asked for, the queue, the runtime asked for) comes
from the user's own choices the service saw on the hub's server while that job ran (`Choice`): a job
it never saw shows no image and cannot be relaunched from the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from carme_slurm.accounting import AccountedJob
from carme_slurm.reasons import describe_end_state

from .cards import SessionServer, exit_words


@dataclass(frozen=True)
class Choice:
    """The user's options of one job's start, as the hub's server showed them (`user_options`)."""

    job_id: str
    user: str
    server: str  # "" the default server
    options: Mapping = field(default_factory=dict)
    seen_at: float = 0.0  # epoch s


def choices_seen(servers: Iterable[SessionServer], now: float) -> list[Choice]:
    """What the hub's servers show now: each running job with the options it was started with."""
    return [Choice(s.job_id, s.user, s.name, dict(s.options), now) for s in servers if s.job_id]


def is_users_carme_job(job: AccountedJob, user: str, prefix: str) -> bool:
    """Carme's job names are `<prefix><user>` (default server) or `<prefix><user>-<slug>`."""
    head = f"{prefix}{user}"
    return job.user == user and (job.name == head or job.name.startswith(head + "-"))


def history(accounted: Iterable[AccountedJob], user: str, prefix: str, choices: Mapping[str, Choice],
            size: int) -> list[dict]:
    """The user's recent Carme jobs, newest first (at most `size`), with what sacct says of each."""
    jobs = sorted((j for j in accounted if is_users_carme_job(j, user, prefix)),
                  key=lambda j: (j.submitted.timestamp() if j.submitted else 0, j.job_id), reverse=True)
    rows = []
    for job in jobs[:size]:
        choice = choices.get(job.job_id)
        options = dict(choice.options) if choice else {}
        ended = job.state not in ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "")
        rows.append({
            "job_id": job.job_id,
            "server": choice.server if choice else None,  # None: not known (the service never saw the job)
            "image": str(options.get("image") or ""),
            "gpu_type": str(options.get("gpu_type") or ""),
            "gpus": job.gpus,
            "project": job.account,
            "node": job.nodes if job.nodes != "None assigned" else "",
            "submitted": job.submitted.timestamp() if job.submitted else None,
            "start": job.started.timestamp() if job.started else None,
            "end": job.ended.timestamp() if job.ended else None,
            "elapsed_s": job.elapsed_s,
            "gpu_hours": round(job.gpu_hours, 4),
            "state": job.state,
            "end_reason": describe_end_state(job.state) if ended else "",
            "exit": exit_words(None, job) if ended else "",
            "relaunch": choice is not None,
            "options": options,
        })
    return rows


class RelaunchError(LookupError):
    """No choices to relaunch with; str() says what is missing."""


def relaunch_options(user: str, server: str, hub_server: SessionServer | None, job_id: str | None,
                     remembered: Mapping[str, Choice]) -> dict:
    """The options a relaunch of `server` starts with: those of job `job_id` (from the history) if
    given, else the server's last start (the hub keeps them), else the newest the service remembered
    for that server. RelaunchError when none is known or the job is not that server's."""
    if job_id:
        choice = remembered.get(job_id)
        if choice is None or choice.user != user:
            raise RelaunchError(f"job {job_id}: no choices of {user}'s are known for it")
        if choice.server != server:
            raise RelaunchError(f"job {job_id} was a job of server {choice.server or '(default)'}, "
                                f"not of {server or '(default)'}")
        return dict(choice.options)
    if hub_server is not None:
        return dict(hub_server.options)
    newest = max((c for c in remembered.values() if c.user == user and c.server == server),
                 key=lambda c: (c.seen_at, c.job_id), default=None)
    if newest is None:
        raise RelaunchError(f"server {server or '(default)'} of {user}: no earlier start is known")
    return dict(newest.options)
