"""SLURM nodes with their GPUs, from `sinfo --json` / `scontrol show node --json` (pure).

`parse_sinfo_json(text)` accepts three shapes of JSON, told apart by their keys:

1. Slurm 22.05 (`sinfo --json`, openapi v0.0.38): a top-level "nodes" list;
   "state" is the base state in lower case ("idle", "mixed") and the flags are
   a separate "state_flags" list (["DRAIN"]); numbers are plain integers.
2. Slurm 23.02+ `scontrol show node --json` (data_parser v0.0.39 ... v0.0.4x,
   the same document as slurmrestd's GET /nodes): a top-level "nodes" list;
   "state" is a list holding the base state and the flags (["IDLE", "DRAIN"]);
   some numbers are {"set": .., "infinite": .., "number": ..} (either is read).
3. Slurm 23.02+ `sinfo --json`: a top-level "sinfo" list of groups, one per
   (partition, node state, gres_used, ...), each with "nodes": {"nodes": [names]},
   "node": {"state": [...]}, "gres": {"total", "used"}, "cpus": {"total",
   "allocated"}, "memory": {"minimum", "allocated"}, "partition": {"name"}.
   State and GPUs in use are exact per node (sinfo groups by them). For groups
   of several nodes CPUs are the group's average, memory its minimum, and
   SLURM prints the gres total and allocated memory of only one of the nodes:
   prefer `scontrol show node --json` when nodes differ.

A node listed several times (once per partition) comes back once, with the
partitions of every listing. A document with non-empty "errors", or without a
"nodes" / "sinfo" list, raises ValueError. Only GRES named "gpu" are GPUs.
"""

# ruff: noqa: TRY004  (malformed SLURM output, wrong JSON types included, is a ValueError by contract)

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from .gres import parse_gres

__all__ = ["UNAVAILABLE_FLAGS", "UNAVAILABLE_STATES", "GpuCount", "SlurmNode", "parse_sinfo_json"]

_BASE_STATES = ("UNKNOWN", "DOWN", "IDLE", "ALLOCATED", "ERROR", "MIXED", "FUTURE", "INVALID")

#: Derived states (see `SlurmNode.state`) in which nothing new starts on the node.
UNAVAILABLE_STATES = frozenset(
    {"down", "drained", "draining", "fail", "failing", "future", "unknown", "error", "invalid"})
#: Flags that take a node out of service. Not here, so still available: COMPLETING (a job ends),
#: CLOUD, POWERED_DOWN / POWERING_UP (power saving: SLURM resumes the node for a job),
#: PLANNED, REBOOT_REQUESTED (without ASAP the node keeps taking jobs until it is idle), RESUME.
#: RESERVED and MAINTENANCE (an active reservation) are here: the node is not free for everyone;
#: whether a given user may use it is a question for the reservations.
UNAVAILABLE_FLAGS = frozenset({
    "DRAIN", "FAIL", "NOT_RESPONDING", "MAINTENANCE", "RESERVED", "INVALID_REG", "REBOOT_ISSUED",
    "POWER_DOWN", "POWERING_DOWN", "POWER_DRAIN", "POWER_DOWN_ASAP", "POWER_DOWN_FORCE",
    "DYNAMIC_FUTURE", "BLOCKED",
})


@dataclass(frozen=True)
class GpuCount:
    """GPUs of one type on one node ("" when untyped): configured and allocated."""

    type: str
    total: int
    allocated: int

    @property
    def free(self) -> int:
        return max(self.total - self.allocated, 0)

    def to_dict(self) -> dict:
        return {"type": self.type, "total": self.total, "allocated": self.allocated, "free": self.free}


@dataclass(frozen=True)
class SlurmNode:
    """One node. `state` is one lower-case word, as sinfo's %T prints it without its suffix
    marks: the base state (idle, mixed, allocated, down, future, unknown), except
    drained/draining (DRAIN flag; draining while jobs still run or complete),
    fail/failing (FAIL flag) and completing (COMPLETING flag on an idle or mixed node).
    `flags` are SLURM's upper-case state flags (DRAIN, MAINTENANCE, RESERVED, ...)."""

    name: str
    address: str
    state: str
    flags: tuple[str, ...]
    partitions: tuple[str, ...]
    cpus: int
    alloc_cpus: int
    memory_mb: int
    alloc_memory_mb: int
    gpus: tuple[GpuCount, ...]
    reason: str
    tmp_disk_mb: int = 0  # TmpDisk: the node's local scratch space (MB; 0 unknown)

    @property
    def available(self) -> bool:
        """Can new jobs start here: a state not in UNAVAILABLE_STATES and no UNAVAILABLE_FLAGS."""
        return self.state not in UNAVAILABLE_STATES and not UNAVAILABLE_FLAGS.intersection(self.flags)

    @property
    def gpus_total(self) -> int:
        return sum(g.total for g in self.gpus)

    @property
    def gpus_allocated(self) -> int:
        return sum(g.allocated for g in self.gpus)

    @property
    def gpus_reachable(self) -> bool:
        """Could a new job get this node's idle GPUs? Not when it is not `available`, nor when the
        state is "allocated" (every CPU taken, or a job holds the node exclusively)."""
        return self.available and self.state != "allocated"

    @property
    def gpus_free(self) -> int:
        """GPUs a new job could get (0 unless `gpus_reachable`)."""
        return sum(g.free for g in self.gpus) if self.gpus_reachable else 0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "address": self.address, "state": self.state, "flags": list(self.flags),
            "partitions": list(self.partitions), "cpus": self.cpus, "alloc_cpus": self.alloc_cpus,
            "memory_mb": self.memory_mb, "alloc_memory_mb": self.alloc_memory_mb,
            "gpus": [g.to_dict() for g in self.gpus], "reason": self.reason,
            "gpus_total": self.gpus_total, "gpus_allocated": self.gpus_allocated,
            "gpus_free": self.gpus_free, "available": self.available, "tmp_disk_mb": self.tmp_disk_mb,
        }


def _num(value) -> int:
    """A plain number, or v0.0.39+'s {"set", "infinite", "number"} (unset or infinite: 0)."""
    if value is None:
        return 0
    if isinstance(value, dict):
        if value.get("infinite") or not value.get("set", True) or value.get("number") is None:
            return 0
        value = value["number"]
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"expected a number, got {value!r}")


def _words(value) -> tuple[str, ...]:
    """A list of strings, or a comma-separated string (v0.0.38 csv fields)."""
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(w for w in value.split(",") if w)
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        return tuple(value)
    raise ValueError(f"expected a list of names, got {value!r}")


def _state(base: str, flags: tuple[str, ...]) -> str:
    """One word, following SLURM's node_state_string() (without the * ~ # ... marks)."""
    base = base.lower()
    busy = base in ("allocated", "mixed") or "COMPLETING" in flags
    if "DRAIN" in flags:
        return "draining" if busy else "drained"
    if "FAIL" in flags:
        return "failing" if base == "allocated" or "COMPLETING" in flags else "fail"
    if base in ("idle", "mixed") and "COMPLETING" in flags:
        return "completing"
    return base


def _split_state(value, extra_flags=None) -> tuple[str, tuple[str, ...]]:
    """(derived state, flags) from "idle" + state_flags (v0.0.38) or ["IDLE", "DRAIN"] (v0.0.39+)."""
    if isinstance(value, str):
        words = [value.upper(), *_words(extra_flags)]
    else:
        words = [w.upper() for w in _words(value)]
    base = next((w for w in words if w in _BASE_STATES), "UNKNOWN")
    flags = tuple(dict.fromkeys(w for w in words if w not in _BASE_STATES))
    return _state(base, flags), flags


def _gpus(gres, gres_used) -> tuple[GpuCount, ...]:
    totals: dict[str, int] = {}
    used: dict[str, int] = {}
    for into, text in ((totals, gres), (used, gres_used)):
        for g in parse_gres(text):
            if g.name == "gpu":
                into[g.type] = into.get(g.type, 0) + g.count
    # One side typed, the other not ("gpu:4" vs "gpu:tesla:2(IDX:0-1)"): the same GPUs.
    if len(totals) == 1 and len(used) == 1 and set(totals) != set(used) and "" in (*totals, *used):
        used = {next(iter(totals)): next(iter(used.values()))}
    types = list(totals) + [t for t in used if t not in totals and used[t]]
    return tuple(GpuCount(t, totals.get(t, 0), used.get(t, 0)) for t in types)


def _str(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string: {value!r:.200}")
    return value


def _obj(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object: {value!r:.200}")
    return value


def _node(raw) -> SlurmNode:
    """One entry of a "nodes" list (shapes 1 and 2)."""
    name = _obj(raw, "node").get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"node without a name: {raw!r:.200}")
    state, flags = _split_state(raw.get("state"), raw.get("state_flags"))
    return SlurmNode(
        name=name, address=_str(raw.get("address"), "address"), state=state, flags=flags,
        partitions=_words(raw.get("partitions")), cpus=_num(raw.get("cpus")),
        alloc_cpus=_num(raw.get("alloc_cpus")), memory_mb=_num(raw.get("real_memory")),
        alloc_memory_mb=_num(raw.get("alloc_memory")),
        gpus=_gpus(raw.get("gres"), raw.get("gres_used")), reason=_str(raw.get("reason"), "reason"),
        tmp_disk_mb=_num(raw.get("temporary_disk")),
    )


def _group(entry) -> list[SlurmNode]:
    """The nodes of one "sinfo" group (shape 3)."""
    nodes = _obj(_obj(entry, "sinfo entry").get("nodes"), "sinfo nodes")
    names = nodes.get("nodes")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"sinfo entry without a list of node names: {entry!r:.200}")
    if not names:
        return []
    addresses = _words(nodes.get("addresses"))
    n = len(names)
    state, flags = _split_state(_obj(entry.get("node"), "sinfo node").get("state"))
    cpus, memory = _obj(entry.get("cpus"), "sinfo cpus"), _obj(entry.get("memory"), "sinfo memory")
    gres, reason = _obj(entry.get("gres"), "sinfo gres"), entry.get("reason")
    reason = reason.get("description") if isinstance(reason, dict) else reason
    partition = _str(_obj(entry.get("partition"), "sinfo partition").get("name"), "partition name")
    common = {
        "state": state, "flags": flags, "partitions": (partition,) if partition else (),
        "cpus": _num(cpus.get("total")) // n, "alloc_cpus": _num(cpus.get("allocated")) // n,
        "memory_mb": _num(memory.get("minimum")), "alloc_memory_mb": _num(memory.get("allocated")),
        "gpus": _gpus(gres.get("total"), gres.get("used")),
        "reason": _str(reason, "reason"),
        "tmp_disk_mb": _num(_obj(entry.get("disk") or {}, "sinfo disk").get("minimum")),
    }
    return [SlurmNode(name=name, address=addresses[i] if len(addresses) == n else "", **common)
            for i, name in enumerate(names)]


def _check_errors(doc: dict) -> None:
    errors = doc.get("errors")
    if errors:
        errors = errors if isinstance(errors, list) else [errors]
        raise ValueError("SLURM reported errors: " + "; ".join(
            str((e.get("description") or e.get("error") or e) if isinstance(e, dict) else e) for e in errors))


def parse_sinfo_json(text: str) -> list[SlurmNode]:
    """Nodes from `sinfo --json` (22.05+) or `scontrol show node --json` (23.02+), each once,
    in the order SLURM lists them (see the module docstring for the shapes)."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("SLURM node JSON is not an object")
    _check_errors(doc)
    if isinstance(doc.get("sinfo"), list):
        found = [node for entry in doc["sinfo"] for node in _group(entry)]
    elif isinstance(doc.get("nodes"), list):
        found = [_node(raw) for raw in doc["nodes"]]
    else:
        raise ValueError("SLURM node JSON has no 'nodes' or 'sinfo' list")
    merged: dict[str, SlurmNode] = {}
    for node in found:
        seen = merged.get(node.name)
        if seen is None:
            merged[node.name] = node
        else:
            parts = tuple(dict.fromkeys(seen.partitions + node.partitions))
            merged[node.name] = replace(seen, partitions=parts)
    return list(merged.values())
