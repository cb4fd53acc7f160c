"""SLURM jobs: what squeue and sbatch print, parsed (pure), and how a job is marked as Carme's.

`parse_squeue_json` reads `squeue --json` of 22.05 (openapi v0.0.38) and of 23.02 to 25.05
(data_parser v0.0.39 to v0.0.43: state lists, {"set", "infinite", "number"} numbers, exit codes
as dicts; tests/unit/test_slurm_versions.py). A Carme job carries
the comment `carme:<user>/<server slug>` and a name starting with the site's job-name prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

from .gres import parse_gres, parse_tres

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

_JOB_ID = re.compile(r"[0-9]{1,12}")
_PARSABLE = re.compile(r"([0-9]{1,12})(?:;[A-Za-z0-9_-]{1,64})?")  # "ID" or "ID;cluster"


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
    account: str = ""
    gpus: int = 0  # GPUs allocated (running) or asked for (pending), all types together
    reservation: str = ""  # the SLURM reservation it runs in ("" none)
    gres_detail: tuple[str, ...] = ()  # per allocated node, in node order: "gpu:a100:2(IDX:0-1)"

    def to_dict(self) -> dict:
        """JSON-ready, with the derived flags the view's readers need."""
        return {**asdict(self), "active": self.is_active, "terminal": self.is_terminal}

    @classmethod
    def from_dict(cls, data: dict) -> SlurmJob:
        """A job from the view's JSON (`to_dict`); extra keys are ignored."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "gres_detail" in values:
            values["gres_detail"] = tuple(values["gres_detail"])
        return cls(**values)

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
    return bool(_JOB_ID.fullmatch(str(job_id)))


# ---- parsers (pure) ----------------------------------------------------------------------------


#: job_state_string()'s order (src/common/slurm_protocol_defs.c): a flag, when set, is the state
_STATE_FLAGS = ("COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED",
                "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD", "SIGNALING")


def _state(raw) -> str:
    """One word, as 22.05 and 23.02 print it (job_state_string()). From 23.11 (v0.0.40) on SLURM
    prints a list, base state first, then flags: ["COMPLETED", "COMPLETING"] is a job still
    completing ("COMPLETING", not over yet), ["RUNNING", "CONFIGURING"] one whose nodes boot."""
    if isinstance(raw, list):
        words = [str(w) for w in raw]
        return next((f for f in _STATE_FLAGS if f in words), words[0] if words else "UNKNOWN")
    return str(raw or "UNKNOWN")


def _number(raw) -> int | None:
    # 22.05 gives plain ints; newer releases give {"set": bool, "infinite": bool, "number": n}
    if isinstance(raw, dict):
        return int(raw["number"]) if raw.get("set") and not raw.get("infinite") else None
    if isinstance(raw, bool) or raw is None:
        return None
    return int(raw)


def _exit(raw) -> tuple[int | None, int | None]:
    """Decode squeue's exit_code: a raw wait status in 22.05, the same in a {"set", "infinite",
    "number"} in 23.02 (v0.0.39), {"status", "return_code", "signal"} from 23.11 (v0.0.40) on."""
    if isinstance(raw, dict) and "number" in raw and "return_code" not in raw:
        raw = _number(raw)
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


def _gpus(raw: dict) -> int:
    """GPUs of a job: allocated ones once it runs (tres_alloc_str "gres/gpu=N", all types together),
    else those asked for (tres_per_node "gres:gpu:N", times the nodes, or tres_per_job)."""
    try:
        allocated = parse_tres(raw.get("tres_alloc_str"))
        if "gres/gpu" in allocated:
            return allocated["gres/gpu"]
        nodes = _number(raw.get("node_count")) or 1
        for key, factor in (("tres_per_node", nodes), ("tres_per_job", 1)):
            asked = sum(g.count for g in parse_gres(raw.get(key)) if g.name == "gpu")
            if asked:
                return asked * factor
    except ValueError:  # a TRES text Carme cannot read counts no GPUs; the job itself is still listed
        return 0
    return 0


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
                account=str(raw.get("account") or ""),
                reservation=str(raw.get("resv_name") or ""),
                gpus=_gpus(raw),
                gres_detail=tuple(str(d) for d in raw.get("gres_detail") or () if d),
            )
        )
    return jobs


def parse_sbatch_output(text: str) -> str:
    """`sbatch --parsable` prints "ID" or "ID;cluster" (after any warnings): return ID."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("sbatch printed no job id")
    match = _PARSABLE.fullmatch(lines[-1])
    if not match:
        raise ValueError(f"sbatch printed no job id: {lines[-1]!r:.100}")
    return match.group(1)
