"""`scontrol` argv for Carme's reservations: create, update, delete (pure builders).

    create_reservation_argv(ReservationSpec(name="carme-r12-alice", users=("alice",),
                            start=1796203200, end=1796210400, nodes=("carme-n2",)))
    -> ["scontrol", "create", "reservation", "ReservationName=carme-r12-alice", "Users=alice",
        "StartTime=uts1796203200", "EndTime=uts1796210400", "Nodes=carme-n2"]

Times go to SLURM as `uts<epoch seconds>` (scontrol's "Unix time stamp" form), so no time zone
is involved between Carme (UTC) and slurmctld (its host's local time). Every value is checked
against the characters SLURM takes for it; a bad one is a ValueError naming the field, raised
before any argv exists (argv never reaches a shell, but SLURM parses `Key=value,value` itself).

What SLURM 22.05 reserves (verified on this host): nodes and cores, not GPUs. `TRES=gres/gpu=2`
(typed or not) is refused with "TRES type 'gres/gpu' not supported with reservations". So
`ReservationSpec.gpus_as_tres` is off by default and a reservation holds whole nodes; on a SLURM
that accepts GRES in a reservation's TRES it adds `TRES=gres/gpu[:TYPE]=N` (see
`carme_services.reservations` for what each mode means for capacity). Without `IGNORE_JOBS`,
SLURM refuses nodes that running jobs hold past the start ("Requested nodes are busy") and two
reservations on one node that overlap ("Requested reservation overlaps with another reservation"):
Carme checks the same before it asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ReservationSpec", "create_reservation_argv", "delete_reservation_argv", "update_reservation_argv"]

RESERVATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a POSIX-ish account name: no , = or spaces
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
GPU_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FLAG = re.compile(r"[A-Z_]{2,32}")


@dataclass(frozen=True)
class ReservationSpec:
    """What a Carme booking asks SLURM for; times in epoch seconds."""

    name: str
    users: tuple[str, ...]
    start: int
    end: int
    nodes: tuple[str, ...]
    partition: str = ""
    gpus: int = 0
    gpu_type: str = ""
    gpus_as_tres: bool = False  # add TRES=gres/gpu[:TYPE]=N (a SLURM that reserves GRES)
    flags: tuple[str, ...] = ()


def _checked(field: str, value: str, pattern: re.Pattern) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{field}: {value!r} is not a valid SLURM {field} (letters, digits, _ . -)")
    return value


def _fields(spec: ReservationSpec) -> list[str]:
    if isinstance(spec.start, bool) or not isinstance(spec.start, int) or spec.start <= 0:
        raise ValueError(f"start: {spec.start!r} is not a time stamp")
    if isinstance(spec.end, bool) or not isinstance(spec.end, int) or spec.end <= spec.start:
        raise ValueError(f"end: {spec.end!r} is not after start {spec.start}")
    if not spec.users:
        raise ValueError("users: a reservation needs at least one user")
    if not spec.nodes:
        raise ValueError("nodes: a reservation needs at least one node")
    fields = [
        "Users=" + ",".join(_checked("user", u, USER_NAME) for u in spec.users),
        f"StartTime=uts{spec.start}",
        f"EndTime=uts{spec.end}",
        "Nodes=" + ",".join(_checked("node", n, NODE_NAME) for n in spec.nodes),
    ]
    if spec.partition:
        fields.append("PartitionName=" + _checked("partition", spec.partition, PARTITION_NAME))
    if spec.gpus_as_tres and spec.gpus:
        if isinstance(spec.gpus, bool) or not isinstance(spec.gpus, int) or spec.gpus < 0:
            raise ValueError(f"gpus: {spec.gpus!r} is not a GPU count")
        kind = "gres/gpu" + (":" + _checked("gpu type", spec.gpu_type, GPU_TYPE) if spec.gpu_type else "")
        fields.append(f"TRES={kind}={spec.gpus}")
    if spec.flags:
        fields.append("Flags=" + ",".join(_checked("flag", f, FLAG) for f in spec.flags))
    return fields


def create_reservation_argv(spec: ReservationSpec) -> list[str]:
    return ["scontrol", "create", "reservation",
            "ReservationName=" + _checked("reservation name", spec.name, RESERVATION_NAME), *_fields(spec)]


UPDATABLE = ("users", "start", "end", "nodes", "partition", "gpus", "flags")


def update_reservation_argv(spec: ReservationSpec, fields: Iterable[str] = UPDATABLE) -> list[str]:
    """`fields` of `spec` (of UPDATABLE) set on an existing reservation. Leave "start" out for one
    that has begun: slurmctld refuses to move the start of a started reservation, even to itself."""
    wanted = set(fields)
    unknown = wanted - set(UPDATABLE)
    if unknown:
        raise ValueError(f"fields: cannot update {', '.join(sorted(unknown))}")
    keys = {"users": "Users=", "start": "StartTime=", "end": "EndTime=", "nodes": "Nodes=",
            "partition": "PartitionName=", "gpus": "TRES=", "flags": "Flags="}
    chosen = [f for f in _fields(spec) if any(f.startswith(keys[w]) for w in wanted)]
    return ["scontrol", "update", "ReservationName=" + _checked("reservation name", spec.name, RESERVATION_NAME),
            *chosen]


def delete_reservation_argv(name: str) -> list[str]:
    return ["scontrol", "delete", "ReservationName=" + _checked("reservation name", name, RESERVATION_NAME)]
