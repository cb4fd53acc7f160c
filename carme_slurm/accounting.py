"""Parsers for SLURM's accounting: usage per association (`sshare`) and recent jobs (`sacct`).

Both read `-P` (pipe-separated) output with a header line, so a column added or moved by a
newer SLURM is found by its name, not its place. `sshare` has no JSON output in 22.05.

- `parse_sshare`: GPU-minutes used this period (`GrpTRESRaw`, the same figure SLURM checks
  `GrpTRESMins` against) and still reserved by running jobs (`TRESRunMins`), per (account, user).
- `parse_sacct_json`: the same from `sacct --json` of 23.02+ (data_parser v0.0.39 to v0.0.43;
  Carme runs the text form, whose columns are the same in 22.05 to 25.05).
- `parse_sacct`: jobs with user, account, name, submit/start/end, state, GPUs and run time, for
  counting the servers a user started today and drawing GPU-hours per day; exit code and nodes
  (optional columns) for the session history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from .gres import parse_tres

SSHARE_FIELDS = ("Account", "User", "RawUsage", "GrpTRESRaw", "TRESRunMins")
SACCT_REQUIRED = ("JobID", "User", "Account", "JobName", "Submit", "Start", "End", "State", "AllocTRES", "ElapsedRaw")
#: what Carme asks sacct for: the required columns, then what only the session history shows
SACCT_FIELDS = (*SACCT_REQUIRED, "ExitCode", "NodeList")


@dataclass(frozen=True)
class AssociationUsage:
    """One association's usage this period, in GPU-minutes (all GPU types together)."""

    account: str
    user: str  # "" for an account's own line (all its users together)
    gpu_minutes_used: float
    gpu_minutes_running: float  # still reserved by running jobs (their remaining time x GPUs)
    raw_usage: int  # SLURM's RawUsage (billing-seconds, for fair share)

    @property
    def key(self) -> str:
        return f"{self.account}/{self.user}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AssociationUsage:
        return cls(**data)


@dataclass(frozen=True)
class AccountedJob:
    job_id: str
    user: str
    account: str
    name: str
    submitted: datetime | None
    started: datetime | None
    ended: datetime | None
    state: str
    gpus: float = 0.0  # allocated (AllocTRES), all types together
    elapsed_s: int = 0  # run time so far (ElapsedRaw)
    exit_code: str = ""  # the batch script's "status:signal" (ExitCode), "" if sacct printed none
    nodes: str = ""  # the nodes it ran on (NodeList; "None assigned" while pending)

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.elapsed_s / 3600

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("submitted", "started", "ended"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AccountedJob:
        return cls(**{**data, **{k: _time(data[k] or "") for k in ("submitted", "started", "ended")}})


def sacct_rows(text: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no header line")
    header = lines[0].split("|")
    missing = [f for f in required if f not in header]
    if missing:
        raise ValueError(f"columns {', '.join(missing)} missing from the header {lines[0][:200]!r}")
    return [dict(zip(header, line.split("|"))) for line in lines[1:]]


def gpu_count(tres: str) -> float:
    """The GPUs in a TRES string: `gres/gpu` (SLURM's total) or, without it, the typed ones summed."""
    parsed = parse_tres(tres)
    if "gres/gpu" in parsed:
        return float(parsed["gres/gpu"])
    return float(sum(count for name, count in parsed.items() if name.startswith("gres/gpu:")))


def parse_sshare(text: str) -> list[AssociationUsage]:
    """`sshare -a -P -o Account,User,RawUsage,GrpTRESRaw,TRESRunMins`, one entry per line."""
    usage = []
    for row in sacct_rows(text, SSHARE_FIELDS):
        account = row["Account"].strip()  # sshare indents the tree
        if not account:
            continue
        raw = row["RawUsage"].strip()
        usage.append(AssociationUsage(
            account=account,
            user=row["User"].strip(),
            gpu_minutes_used=gpu_count(row["GrpTRESRaw"]),
            gpu_minutes_running=gpu_count(row["TRESRunMins"]),
            raw_usage=int(raw) if raw.isdigit() else 0,
        ))
    return usage


def _time(value: str) -> datetime | None:
    value = value.strip()
    if not value or value in ("Unknown", "None"):
        return None
    return datetime.fromisoformat(value)


def parse_sacct(text: str) -> list[AccountedJob]:
    """`sacct -X -P -o JobID,User,Account,JobName,Submit,Start,End,State,AllocTRES,ElapsedRaw[,ExitCode,NodeList]`."""
    return [
        AccountedJob(
            job_id=row["JobID"].strip(),
            user=row["User"].strip(),
            account=row["Account"].strip(),
            name=row["JobName"].strip(),
            submitted=_time(row["Submit"]),
            started=_time(row["Start"]),
            ended=_time(row["End"]),
            state=row["State"].split()[0] if row["State"].strip() else "",  # "CANCELLED by 0"
            gpus=gpu_count(row["AllocTRES"]),
            elapsed_s=int(row["ElapsedRaw"]) if row["ElapsedRaw"].strip().isdigit() else 0,
            exit_code=(row.get("ExitCode") or "").strip(),
            nodes=(row.get("NodeList") or "").strip(),
        )
        for row in sacct_rows(text, SACCT_REQUIRED)
        if row["JobID"].strip()
    ]


def _epoch(value) -> int:
    # v0.0.39+ sacct times are plain integers; a {"set", "infinite", "number"} is read too
    if isinstance(value, dict):
        return int(value.get("number") or 0) if value.get("set", True) and not value.get("infinite") else 0
    return int(value or 0)


def _json_exit(raw) -> str:
    """sacct --json's exit_code as the text form's "status:signal"."""
    if not isinstance(raw, dict):
        return ""
    signal = raw.get("signal") or {}
    code = _epoch(raw.get("return_code"))
    sig = _epoch(signal.get("id", signal.get("signal_id")))
    return f"{code}:{sig}"


def _json_gpus(tres: list) -> float:
    gpus = {(t.get("name") or ""): t.get("count") or 0 for t in tres if t.get("type") == "gres"}
    if "gpu" in gpus:
        return float(gpus["gpu"])
    return float(sum(n for name, n in gpus.items() if name.startswith("gpu:")))


def parse_sacct_json(text: str) -> list[AccountedJob]:
    """`sacct -X --json` (23.02+): the fields of `parse_sacct` (GPUs from tres.allocated,
    elapsed from time.elapsed); ValueError for anything else, or SLURM's errors."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise ValueError("sacct --json output has no 'jobs' list")
    if doc.get("errors"):
        raise ValueError(f"sacct reported errors: {doc['errors']!r:.300}")
    out = []
    for raw in doc["jobs"]:
        when = raw.get("time") or {}
        state = (raw.get("state") or {}).get("current")
        state = (state[0] if state else "") if isinstance(state, list) else str(state or "")
        moment = lambda key: datetime.fromtimestamp(_epoch(when.get(key))) if _epoch(when.get(key)) else None
        out.append(AccountedJob(
            job_id=str(raw["job_id"]), user=str(raw.get("user") or ""), account=str(raw.get("account") or ""),
            name=str(raw.get("name") or ""), submitted=moment("submission"), started=moment("start"),
            ended=moment("end"), state=state, gpus=_json_gpus((raw.get("tres") or {}).get("allocated") or []),
            elapsed_s=_epoch(when.get("elapsed")), exit_code=_json_exit(raw.get("exit_code")),
            nodes=str(raw.get("nodes") or ""),
        ))
    return out
