"""Free GPUs over the next days, from SLURM's own data (pure): the original Carme's forecast.

    forecast(nodes, jobs, reservations, now, hours=72, step_hours=1) -> Forecast

From the hub's one view (the documents of GET /hub/api/carme/slurm/{nodes,jobs,reservations}):
- a node that is down or drained offers nothing (nobody knows when it returns);
- a running job holds its GPUs (by type, from its gres_detail) on its node until its end time
  (its time limit: SLURM's own end_time; a job may end earlier, never later);
- a reservation holds every GPU of its nodes from its start to its end (a whole-node reservation,
  as SLURM 22.05 makes them; one with a gres/gpu TRES holds that many, spread over its nodes' types
  in order).
Pending jobs are not placed: when they start is SLURM's decision (the form's expected start asks
it); so the forecast is what stays free if nothing new starts, an upper bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from carme_slurm.gres import parse_gres
from carme_slurm.hostlist import expand_hostlist
from carme_slurm.nodes import UNAVAILABLE_FLAGS, UNAVAILABLE_STATES

HOLDING_STATES = ("RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING")
_RESERVATION_FLAGS = frozenset({"RESERVED", "MAINTENANCE"})  # a node in a reservation is not down


@dataclass(frozen=True)
class Forecast:
    times: tuple[float, ...]  # epoch seconds: now, then every step
    free: Mapping[str, tuple[int, ...]]  # GPU type ("gpu" untyped) -> free GPUs at each time
    usable: Mapping[str, int]  # GPUs of the type on nodes that are up

    def to_dict(self) -> dict:
        return {"times": list(self.times), "free": {t: list(v) for t, v in self.free.items()},
                "usable": dict(self.usable)}

    def first_free(self, gpu_type: str, gpus: int) -> float | None:
        """The first time at which `gpus` GPUs of the type are free, None if not within the window."""
        return next((t for t, n in zip(self.times, self.free.get(gpu_type, ())) if n >= gpus), None)


def node_gpus(node: Mapping) -> dict[str, int]:
    gpus: dict[str, int] = {}
    for g in node.get("gpus") or ():
        gpus[g["type"] or "gpu"] = gpus.get(g["type"] or "gpu", 0) + int(g["total"])
    return gpus


def node_usable(node: Mapping) -> bool:
    flags = set(node.get("flags") or ()) - _RESERVATION_FLAGS
    return node.get("state") not in UNAVAILABLE_STATES and not (flags & UNAVAILABLE_FLAGS)


def job_gpus_by_node(job: Mapping, nodes: list[str], known: Mapping[str, Mapping[str, int]]) -> dict[str, dict]:
    """{node: {type: n}} a running job holds: its gres_detail per node where SLURM gives it, else its
    GPU count on its first node, of that node's first type."""
    held: dict[str, dict[str, int]] = {}
    details = list(job.get("gres_detail") or ())
    if details:
        for node, detail in zip(nodes, details):
            for piece in parse_gres(detail):
                if piece.name == "gpu" and piece.count:
                    kind = piece.type or next(iter(known.get(node, {"gpu": 0})), "gpu")
                    held.setdefault(node, {})[kind] = held.get(node, {}).get(kind, 0) + piece.count
        return held
    if nodes and int(job.get("gpus") or 0):
        kind = next(iter(known.get(nodes[0], {"gpu": 0})), "gpu")
        held[nodes[0]] = {kind: int(job["gpus"])}
    return held


def forecast(nodes: Iterable[Mapping], jobs: Iterable[Mapping], reservations: Iterable[Mapping], now: float,
             hours: int = 72, step_hours: float = 1) -> Forecast:
    up = {n["name"]: node_gpus(n) for n in nodes if node_usable(n)}
    types = sorted({t for gpus in up.values() for t in gpus})
    usable = {t: sum(g.get(t, 0) for g in up.values()) for t in types}
    holds: list[tuple[float, float, str, dict[str, int]]] = []  # (start, end, node, {type: n})
    for job in jobs:
        if job.get("state") not in HOLDING_STATES or not job.get("nodes"):
            continue
        end = float(job.get("end_time") or 0) or float("inf")
        for node, gpus in job_gpus_by_node(job, expand_hostlist(job["nodes"]), up).items():
            holds.append((float(job.get("start_time") or 0), end, node, gpus))
    for r in reservations:
        names = [n for n in expand_hostlist(r.get("nodes") or "") if n in up]
        budget = (r.get("tres") or {}).get("gres/gpu")
        for node in names:
            gpus = dict(up[node])
            if budget is not None:  # a GPU reservation: that many, taken from its nodes in order
                for kind in list(gpus):
                    gpus[kind] = min(gpus[kind], budget)
                    budget -= gpus[kind]
            holds.append((float(r["start_time"]), float(r["end_time"]), node, gpus))
    steps = int(hours / step_hours) + 1
    times = tuple(now + i * step_hours * 3600 for i in range(steps))
    free = {}
    for kind in types:
        row = []
        for t in times:
            taken = {}
            for start, end, node, gpus in holds:
                if start <= t < end and kind in gpus:
                    taken[node] = taken.get(node, 0) + gpus[kind]
            row.append(sum(max(0, up[n].get(kind, 0) - taken.get(n, 0)) for n in up))
        free[kind] = tuple(row)
    return Forecast(times, free, usable)
