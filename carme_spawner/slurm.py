"""SLURM access: async argv command wrappers and the parsers of SLURM's output.

The one place in Carme that knows SLURM's command names and output formats. Every command runs
as an argv list (never through a shell) with a time-out; a failure raises `SlurmCommandError`
carrying the exit code and stderr, so callers can tell "SLURM did not answer" from "SLURM said
the job is gone".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass

#: states in which a job still holds (or waits for) resources
ACTIVE_STATES = frozenset(
    {
        "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
        "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
        "SPECIAL_EXIT", "RESV_DEL_HOLD",
    }
)
#: states after which the job will not run again
TERMINAL_STATES = frozenset(
    {
        "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
        "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED",
    }
)

_JOB_ID = re.compile(r"^[0-9]{1,12}$")
_PARSABLE = re.compile(r"^([0-9]{1,12})(?:;[A-Za-z0-9_-]{1,64})?$")  # "ID" or "ID;cluster"


class SlurmCommandError(RuntimeError):
    """A SLURM command failed: it did not run, timed out, exited non-zero or printed nonsense."""

    def __init__(self, argv: list[str], message: str, returncode: int | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        super().__init__(f"{argv[0]}: {message}")


@dataclass(frozen=True)
class SlurmJob:
    """One job as squeue reports it (only the fields Carme uses)."""

    job_id: str
    name: str
    user: str
    state: str
    reason: str
    partition: str
    nodes: str
    batch_host: str
    comment: str
    submit_time: int
    start_time: int  # estimated start while PENDING (0 if unknown), actual start once running
    end_time: int
    time_limit_minutes: int | None
    exit_status: int | None  # the batch script's exit status, when it exited normally
    exit_signal: int | None  # the signal that ended it, if one did
    output_path: str  # %j already replaced

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_terminal(self) -> bool:
        """Ended for good. A state Carme does not know is NOT taken as ended."""
        return self.state in TERMINAL_STATES

    @property
    def is_running(self) -> bool:
        return self.state == "RUNNING"

    @property
    def is_pending(self) -> bool:
        return self.state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD")


COMMENT_PREFIX = "carme:"


def server_slug(name: str) -> str:
    """A server name in job-name-safe characters ("" for the default server)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name or "")[:60]


def job_comment(user: str, server_name: str) -> str:
    """The --comment that marks a job as Carme's: carme:<user>/<server slug>."""
    return f"{COMMENT_PREFIX}{user}/{server_slug(server_name)}"


def parse_job_comment(comment: str) -> tuple[str, str] | None:
    """carme:<user>/<slug> -> (user, slug); None for any other comment."""
    if not comment.startswith(COMMENT_PREFIX) or "/" not in comment:
        return None
    user, _, slug = comment[len(COMMENT_PREFIX):].partition("/")
    return (user, slug) if user else None


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(str(job_id)))


async def run_command(
    argv: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> str:
    """Run argv (no shell) and return its stdout; raise SlurmCommandError on any failure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as e:
        raise SlurmCommandError(argv, f"could not run: {e}") from e
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmCommandError(argv, f"timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()[-2000:] or "(no error text)"
        raise SlurmCommandError(argv, f"exit {proc.returncode}: {detail}", proc.returncode)
    return out.decode(errors="replace")


# ---- parsers (pure) ----------------------------------------------------------------------------


def _state(raw) -> str:
    # 22.05 gives a string; newer releases give a list of flags
    if isinstance(raw, list):
        return str(raw[0]) if raw else "UNKNOWN"
    return str(raw or "UNKNOWN")


def _number(raw) -> int | None:
    # 22.05 gives plain ints; newer releases give {"set": bool, "infinite": bool, "number": n}
    if isinstance(raw, dict):
        return int(raw["number"]) if raw.get("set") and not raw.get("infinite") else None
    if isinstance(raw, bool) or raw is None:
        return None
    return int(raw)


def _exit(raw) -> tuple[int | None, int | None]:
    """Decode squeue's exit_code: a raw wait status in 22.05, a dict in newer releases."""
    if isinstance(raw, dict):
        status = _number(raw.get("return_code"))
        signal = _number((raw.get("signal") or {}).get("id"))
        return status, signal or None
    value = _number(raw)
    if value is None:
        return None, None
    if value & 0x7F:
        return None, value & 0x7F
    return (value >> 8) & 0xFF, None


def parse_squeue_json(text: str) -> list[SlurmJob]:
    """Parse `squeue --json` output; raise ValueError when it is not what SLURM prints."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ValueError("squeue --json output has no 'jobs' list")
    errors = data.get("errors") or []
    if errors:
        raise ValueError(f"squeue reported errors: {errors!r:.300}")
    jobs = []
    for raw in data["jobs"]:
        job_id = str(raw["job_id"])
        status, signal = _exit(raw.get("exit_code"))
        jobs.append(
            SlurmJob(
                job_id=job_id,
                name=str(raw.get("name", "")),
                user=str(raw.get("user_name", "")),
                state=_state(raw.get("job_state")),
                reason=str(raw.get("state_reason") or "None"),
                partition=str(raw.get("partition", "")),
                nodes=str(raw.get("nodes") or ""),
                batch_host=str(raw.get("batch_host") or ""),
                comment=str(raw.get("comment") or ""),
                submit_time=_number(raw.get("submit_time")) or 0,
                start_time=_number(raw.get("start_time")) or 0,
                end_time=_number(raw.get("end_time")) or 0,
                time_limit_minutes=_number(raw.get("time_limit")),
                exit_status=status,
                exit_signal=signal,
                output_path=str(raw.get("standard_output") or "").replace("%j", job_id),
            )
        )
    return jobs


def parse_sbatch_output(text: str) -> str:
    """`sbatch --parsable` prints "ID" or "ID;cluster" (after any warnings): return ID."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("sbatch printed no job id")
    match = _PARSABLE.match(lines[-1])
    if not match:
        raise ValueError(f"sbatch printed no job id: {lines[-1]!r:.100}")
    return match.group(1)


def parse_node_addresses(text: str) -> dict[str, str]:
    """Parse `sinfo -h -N -o %N|%o` (node name|NodeAddr) into {node: address}."""
    addresses = {}
    for line in text.splitlines():
        name, _, addr = line.strip().partition("|")
        if name and addr:
            addresses[name] = addr
    return addresses


# ---- commands ----------------------------------------------------------------------------------


async def squeue_all(timeout: float = 30) -> list[SlurmJob]:
    """Every job slurmctld knows (one call, all users)."""
    argv = ["squeue", "--all", "--json"]
    out = await run_command(argv, timeout=timeout)
    try:
        return parse_squeue_json(out)
    except (ValueError, KeyError, TypeError) as e:
        raise SlurmCommandError(argv, f"unparsable output: {e}") from e


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


async def node_addresses(timeout: float = 30) -> dict[str, str]:
    out = await run_command(["sinfo", "-h", "-N", "-o", "%N|%o"], timeout=timeout)
    return parse_node_addresses(out)


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for SLURM commands: PATH and SLURM_CONF from ours, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "SLURM_CONF", "LANG", "LC_ALL")}
    env.update(extra or {})
    return env
