"""SLURM advanced reservations, from `scontrol show reservation` text or JSON (pure).

`parse_reservations_text(text, tz=None)` reads Slurm 22.05's `scontrol -o show
reservation` (one line per reservation) and also the default multi-line form
(a record starts at "ReservationName=", indented lines continue it):

    ReservationName=r StartTime=2026-12-02T21:24:24 EndTime=2026-12-02T22:24:24
    Duration=01:00:00 Nodes=carme-n[1-2] NodeCnt=2 CoreCnt=16 Features=(null)
    PartitionName=(null) Flags=MAINT,IGNORE_JOBS TRES=cpu=16 Users=-alice
    Groups=(null) Accounts=(null) Licenses=(null) State=INACTIVE ...

"No reservations in the system" (or nothing) gives []. Times are in SLURM's
default "standard" format (YYYY-MM-DDTHH:MM:SS) in the local time of the host
that ran scontrol: `tz=None` reads them in this process's local time, a tzinfo
reads them in that zone ("Unknown"/"None" give 0). A SLURM_TIME_FORMAT other
than the default raises ValueError.

`parse_reservations_json(text, now=None)` reads `scontrol show reservation --json`
of Slurm 23.02+ (data_parser v0.0.39: times are integers; v0.0.40+: times are
{"set", "infinite", "number"}, unset or infinite read as 0). That JSON has no
state: it is computed as `scontrol` does, ACTIVE when start <= now <= end
(`now` in epoch seconds, default the current time), else INACTIVE.

Users and accounts are kept exactly as SLURM prints them, split at commas, with
"(null)" (none set) dropped: "alice,bob" -> ("alice", "bob"); an excluded user
keeps SLURM's leading "-" ("-alice" -> ("-alice",): everyone but alice).
"(null)" in any other field reads as "".
"""

# ruff: noqa: TRY004  (malformed SLURM output, wrong JSON types included, is a ValueError by contract)

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from .gres import parse_tres

__all__ = ["SlurmReservation", "parse_reservations_json", "parse_reservations_text"]

_NONE_TEXT = "No reservations in the system"
_KEY_SPLIT = re.compile(r"\s+(?=[A-Za-z][A-Za-z0-9_]*=)")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True)
class SlurmReservation:
    """One reservation. `nodes` is the hostlist expression as printed ("carme-n[1-2]")."""

    name: str
    state: str
    start_time: int
    end_time: int
    nodes: str
    node_count: int
    partition: str
    users: tuple[str, ...]
    accounts: tuple[str, ...]
    flags: tuple[str, ...]
    tres: dict[str, int] = field(hash=False)

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"

    def admits(self, user: str) -> bool | None:
        """May `user` run jobs in it, as far as its Users field tells: True when it names them (or
        excludes others only), False when it surely refuses them (not named, or named with "-"),
        None when it names no users (accounts or groups decide, which SLURM checks)."""
        if not self.users:
            return None
        excluded = {u[1:] for u in self.users if u.startswith("-")}
        if excluded:
            return user not in excluded
        return user in self.users

    def to_dict(self) -> dict:
        return {
            "name": self.name, "state": self.state, "start_time": self.start_time, "end_time": self.end_time,
            "nodes": self.nodes, "node_count": self.node_count, "partition": self.partition,
            "users": list(self.users), "accounts": list(self.accounts), "flags": list(self.flags),
            "tres": dict(self.tres),
        }


def _text(value) -> str:
    """A string field: None and "(null)" are ""."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return "" if value.strip() == "(null)" else value.strip()


def _names(value) -> tuple[str, ...]:
    """"a,b" or ["a", "b"] -> ("a", "b"); "(null)" / "" / None -> ()."""
    if isinstance(value, list):
        return tuple(_text(v) for v in value if _text(v))
    return tuple(w for w in _text(value).split(",") if w and w != "(null)")


def _epoch_from_text(value: str, tz: tzinfo | None) -> int:
    if value in ("", "Unknown", "None", "(null)"):
        return 0
    try:
        moment = datetime.strptime(value, _TIME_FORMAT)
    except ValueError:
        raise ValueError(f"reservation time {value!r} is not YYYY-MM-DDTHH:MM:SS") from None
    if tz is not None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp())


def _int_text(key: str, value: str) -> int:
    value = _text(value)
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"reservation {key}={value!r} is not a number")
    return int(value)


def _records(text: str) -> list[str]:
    """One string per reservation: a line starting "ReservationName=" opens one."""
    records: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("ReservationName="):
            records.append(line.strip())
        elif records and line[:1].isspace():
            records[-1] += " " + line.strip()
        elif line.strip() == _NONE_TEXT and not records:
            continue
        else:
            raise ValueError(f"not a reservation line: {line.strip()[:200]!r}")
    return records


def _pairs(record: str) -> dict[str, str]:
    pairs = {}
    for piece in _KEY_SPLIT.split(record):
        key, sep, value = piece.partition("=")
        if not sep:
            raise ValueError(f"not Key=Value: {piece[:200]!r}")
        pairs[key] = value
    return pairs


def parse_reservations_text(text: str, tz: tzinfo | None = None) -> list[SlurmReservation]:
    """Reservations from `scontrol [-o] show reservation` (see the module docstring)."""
    out = []
    for record in _records(text):
        p = _pairs(record)
        state = _text(p.get("State")).upper()
        if state not in ("ACTIVE", "INACTIVE"):
            raise ValueError(f"reservation {p.get('ReservationName')!r}: State={p.get('State')!r}")
        out.append(SlurmReservation(
            name=_text(p.get("ReservationName")), state=state,
            start_time=_epoch_from_text(_text(p.get("StartTime")), tz),
            end_time=_epoch_from_text(_text(p.get("EndTime")), tz),
            nodes=_text(p.get("Nodes")), node_count=_int_text("NodeCnt", p.get("NodeCnt")),
            partition=_text(p.get("PartitionName")), users=_names(p.get("Users")),
            accounts=_names(p.get("Accounts")), flags=_names(p.get("Flags")), tres=parse_tres(p.get("TRES")),
        ))
    return out


def _epoch_from_json(value) -> int:
    """An integer (v0.0.39) or {"set", "infinite", "number"} (v0.0.40+; unset or infinite: 0)."""
    if value is None:
        return 0
    if isinstance(value, dict):
        if value.get("infinite") or not value.get("set", True):
            return 0
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a UNIX timestamp, got {value!r}")
    return value


def parse_reservations_json(text: str, now: float | None = None) -> list[SlurmReservation]:
    """Reservations from `scontrol show reservation --json` (23.02+; see the module docstring)."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("SLURM reservation JSON is not an object")
    errors = doc.get("errors")
    if errors:
        errors = errors if isinstance(errors, list) else [errors]
        raise ValueError("SLURM reported errors: " + "; ".join(
            str((e.get("description") or e.get("error") or e) if isinstance(e, dict) else e) for e in errors))
    raws = doc.get("reservations")
    if not isinstance(raws, list):
        raise ValueError("SLURM reservation JSON has no 'reservations' list")
    moment = time.time() if now is None else now
    out = []
    for raw in raws:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ValueError(f"reservation without a name: {raw!r:.200}")
        start, end = _epoch_from_json(raw.get("start_time")), _epoch_from_json(raw.get("end_time"))
        count = raw.get("node_count") or 0
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError(f"reservation {raw['name']!r}: node_count {count!r}")
        out.append(SlurmReservation(
            name=raw["name"], state="ACTIVE" if start <= moment <= end else "INACTIVE",
            start_time=start, end_time=end, nodes=_text(raw.get("node_list")), node_count=count,
            partition=_text(raw.get("partition")), users=_names(raw.get("users")),
            accounts=_names(raw.get("accounts")), flags=_names(raw.get("flags")),
            tres=parse_tres(raw.get("tres")),
        ))
    return out
