"""SLURM's commands as argv lists with time-outs: the one place Carme runs them.

Nothing here goes through a shell. A failure raises `SlurmCommandError` carrying the exit code
and stderr, so callers can tell "SLURM did not answer" from "SLURM said the job is gone".
Queries (`squeue_all`, `sinfo_nodes`, `show_reservations`, and accounting: `sshare_usage`,
`sacct_jobs_since`) are for the hub's one view
(`carme_slurm.view`); everything else in Carme reads that view. Changes (`sbatch`, `scancel`)
are for whoever changes SLURM.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from .accounting import (
    SACCT_FIELDS,
    SSHARE_FIELDS,
    AccountedJob,
    AssociationUsage,
    parse_sacct,
    parse_sshare,
)
from .jobs import SlurmJob, parse_sbatch_output, parse_squeue_json, valid_job_id
from .nodes import SlurmNode, parse_sinfo_json
from .reservations import SlurmReservation, parse_reservations_text
from .versions import parse_version


class SlurmCommandError(RuntimeError):
    """A SLURM command failed: it did not run, timed out, exited non-zero or printed nonsense."""

    def __init__(self, argv: list[str], message: str, returncode: int | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        super().__init__(f"{argv[0]}: {message}")


async def run_command(
    argv: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    output: str = "stdout",
) -> str:
    """Run argv (no shell) and return its stdout (or, output="stderr", what it printed there: sbatch
    --test-only answers on stderr); raise SlurmCommandError on any failure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a time-out kills what it started too
        )
    except OSError as e:
        raise SlurmCommandError(argv, f"could not run: {e}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), timeout)
    except asyncio.TimeoutError:
        _kill_group(proc)
        try:  # a child that escaped the group may hold the pipes: do not wait on it for long
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            pass
        raise SlurmCommandError(argv, f"timed out after {timeout:g} s") from None
    except asyncio.CancelledError:  # whoever awaited us gave up: the command must not outlive them
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()[-2000:] or "(no error text)"
        raise SlurmCommandError(argv, f"exit {proc.returncode}: {detail}", proc.returncode)
    return (err if output == "stderr" else out).decode(errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the command and its process group (sudo's child, a shell's sleep): what we may kill."""
    if proc.returncode is not None:  # reaped already: its pid may be another process's now
        return
    for kill in (lambda: os.killpg(proc.pid, 9), proc.kill):
        try:
            kill()
        except OSError:  # gone, or not ours to kill (a setuid command run by a hub that is not root)
            pass


async def _parsed(argv: list[str], parse, timeout: float, extra_env: dict[str, str] | None = None):
    out = await run_command(argv, timeout=timeout, env={**os.environ, **extra_env} if extra_env else None)
    try:
        # in a worker thread: a big site's sacct or squeue output takes seconds to parse, and the
        # hub's event loop (every user's page and API call) must not wait for it
        return await asyncio.to_thread(parse, out)
    except (ValueError, KeyError, TypeError) as e:
        raise SlurmCommandError(argv, f"unparsable output: {e}") from e


# ---- queries (the hub's view only) ---------------------------------------------------------------


async def squeue_all(timeout: float = 30, extra_env: dict[str, str] | None = None) -> list[SlurmJob]:
    """Every job slurmctld knows (one call, all users); `extra_env`: `versions.query_env`'s."""
    return await _parsed(["squeue", "--all", "--json"], parse_squeue_json, timeout, extra_env)


async def sinfo_nodes(timeout: float = 30, extra_env: dict[str, str] | None = None) -> list[SlurmNode]:
    """Every node with its state, address, CPUs, memory and GPUs (total and allocated, per type)."""
    return await _parsed(["sinfo", "--json"], parse_sinfo_json, timeout, extra_env)


async def slurm_version(timeout: float = 10) -> tuple[int, int, int]:
    """The SLURM release of the client commands (`sbatch --version`: no call to slurmctld)."""
    out = await run_command(["sbatch", "--version"], timeout=timeout)
    try:
        return parse_version(out)
    except ValueError as e:
        raise SlurmCommandError(["sbatch", "--version"], str(e)) from e


async def show_reservations(timeout: float = 30) -> list[SlurmReservation]:
    """Every reservation (`scontrol -o show reservation`: 22.05 has no JSON for reservations)."""
    return await _parsed(["scontrol", "-o", "show", "reservation"], parse_reservations_text, timeout)


async def sshare_usage(timeout: float = 30) -> list[AssociationUsage]:
    """Every association's usage this period (slurmdbd's figures, as slurmctld keeps them)."""
    return await _parsed(["sshare", "-a", "-P", "-o", ",".join(SSHARE_FIELDS)], parse_sshare, timeout)


async def sacct_jobs_since(since: datetime, timeout: float = 30) -> list[AccountedJob]:
    """All users' jobs (allocations only) from `since` until now: a bounded window, never all of history."""
    argv = ["sacct", "-a", "-X", "-P", "-S", since.strftime("%Y-%m-%dT%H:%M:%S"), "-E", "now",
            "-o", ",".join(SACCT_FIELDS)]
    return await _parsed(argv, parse_sacct, timeout)


# ---- changes ---------------------------------------------------------------------------------------


async def sbatch(script: str, *, prefix: list[str], env: dict[str, str], timeout: float = 60) -> str:
    """Submit `script` on stdin with `prefix` (e.g. runuser -u USER --); return the job id."""
    argv = [*prefix, "sbatch", "--parsable"]
    out = await run_command(argv, input=script, env=env, timeout=timeout)
    try:
        return parse_sbatch_output(out)
    except ValueError as e:
        raise SlurmCommandError(argv, str(e)) from e


async def scancel(job_id: str, timeout: float = 30) -> None:
    if not valid_job_id(job_id):
        raise ValueError(f"not a SLURM job id: {job_id!r:.40}")
    await run_command(["scancel", job_id], timeout=timeout)


def time_limit_argv(job_id: str, minutes: int) -> list[str]:
    """`scontrol update` of a job's time limit (whole minutes, as SLURM counts TimeLimit)."""
    if not valid_job_id(job_id):
        raise ValueError(f"not a SLURM job id: {job_id!r:.40}")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 366 * 24 * 60:
        raise ValueError(f"time limit: must be 1 to {366 * 24 * 60} minutes, got {minutes!r:.20}")
    return ["scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes}"]


async def set_time_limit(job_id: str, minutes: int, timeout: float = 30) -> None:
    """Change a job's time limit (as root or SlurmUser: a user may only lower their own)."""
    await run_command(time_limit_argv(job_id, minutes), env=command_env(), timeout=timeout)


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for SLURM commands: PATH and SLURM_CONF from ours, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "SLURM_CONF", "LANG", "LC_ALL")}
    env.update(extra or {})
    return env
