"""Where a booking's GPUs can come from in its window, or what stands in the way (pure).

    place(request, nodes, holds, whole_nodes=True) -> ("carme-n2",)   or raises CapacityConflict

`nodes` are the cluster's nodes with their GPUs per type (`nodes_from_view`, from the hub's one
view). `holds` are what already claims nodes or GPUs in some window (`Hold`): other bookings
(pending ones too, so approving one never finds its GPUs gone), SLURM reservations Carme did not
make, and running jobs until their time limit ends (SLURM refuses a reservation on nodes jobs
hold past its start: "Requested nodes are busy").

Two modes, as the SLURM below can reserve (see `carme_slurm.reservation_argv`):
- whole nodes (SLURM 22.05, `whole_nodes=True`): a booking reserves whole nodes; a node is free
  for a window when nothing overlapping holds any of it. The request's GPUs must be on free
  nodes; the fewest GPUs that fit are taken (one node if one has enough: a server runs on one
  node), so a 2-GPU booking takes the 2-GPU node and leaves the 4-GPU node to others.
- GPUs (a SLURM that reserves GRES): a node offers what its GPUs of the type minus the
  overlapping holds' GPUs leave.

A node that is down, drained or failing offers nothing (nobody knows when it returns); a node in
an active reservation is not "down": the reservation is a hold with its own window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from carme_slurm.hostlist import expand_hostlist
from carme_slurm.nodes import UNAVAILABLE_FLAGS, UNAVAILABLE_STATES

from .booking import BookingError, BookingRequest

#: flags of an active reservation: its window is a hold, the node itself is fine
_RESERVATION_FLAGS = frozenset({"RESERVED", "MAINTENANCE"})


@dataclass(frozen=True)
class NodeGpus:
    name: str
    partitions: tuple[str, ...]
    gpus: Mapping[str, int]  # type ("" untyped) -> how many the node has
    usable: bool = True
    state: str = "idle"

    def count(self, gpu_type: str) -> int:
        return sum(self.gpus.values()) if not gpu_type else self.gpus.get(gpu_type, 0)


@dataclass(frozen=True)
class Hold:
    """Something holding `nodes` (whole, or `gpus` of them) from `start` to `end`."""

    start: datetime
    end: datetime
    nodes: tuple[str, ...]
    what: str  # how a refusal names it: "a booking", "reservation maint", "running jobs"
    gpus: Mapping[str, Mapping[str, int]] | None = None  # node -> {type: n} ("" any type); None: whole nodes
    booking_id: int | None = None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "nodes": list(self.nodes),
                "what": self.what}


class CapacityConflict(BookingError):
    """Not enough free GPUs in the window (409), with the holds that take them."""

    def __init__(self, message: str, conflicts: Sequence[Hold]):
        super().__init__("start", message, 409)
        self.conflicts = tuple(conflicts)


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def nodes_from_view(nodes: Iterable[Mapping]) -> list[NodeGpus]:
    """The view's nodes (GET /hub/api/carme/slurm/nodes, "nodes") with their GPUs per type."""
    out = []
    for n in nodes:
        gpus: dict[str, int] = {}
        for g in n.get("gpus") or ():
            gpus[g["type"]] = gpus.get(g["type"], 0) + int(g["total"])
        flags = set(n.get("flags") or ()) - _RESERVATION_FLAGS
        usable = n.get("state") not in UNAVAILABLE_STATES and not (flags & UNAVAILABLE_FLAGS)
        out.append(NodeGpus(n["name"], tuple(n.get("partitions") or ()), gpus, usable, n.get("state", "")))
    return out


def job_holds(jobs: Iterable[Mapping], after: datetime, inside: Iterable[str] = ()) -> list[Hold]:
    """Running jobs (the view's "jobs") as holds on their nodes until their end (their time limit),
    but those running in one of the reservations `inside` (a booking's own: its hold covers them)."""
    holds, skipped = [], set(inside)
    for job in jobs:
        if job.get("state") not in ("RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING") or not job.get("nodes"):
            continue
        if job.get("reservation") and job["reservation"] in skipped:
            continue
        end = utc(job.get("end_time") or 0) if job.get("end_time") else datetime.max.replace(tzinfo=timezone.utc)
        if end <= after:
            continue
        nodes = tuple(expand_hostlist(job["nodes"]))
        gpus = {nodes[0]: {"": int(job.get("gpus") or 0)}} if nodes else {}
        holds.append(Hold(utc(job.get("start_time") or 0), end, nodes, "running jobs", gpus))
    return holds


def reservation_holds(reservations: Iterable[Mapping], skip: Iterable[str] = ()) -> list[Hold]:
    """SLURM's reservations (the view's "reservations") as whole-node holds, but those in `skip`
    (Carme's own, counted as bookings)."""
    skipped = set(skip)
    return [Hold(utc(r["start_time"]), utc(r["end_time"]), tuple(expand_hostlist(r.get("nodes") or "")),
                 f"reservation {r['name']}")
            for r in reservations if r["name"] not in skipped and r.get("nodes")]


@dataclass
class _Offer:
    node: NodeGpus
    free: int
    blocked_by: list[Hold] = field(default_factory=list)


def _offer(node: NodeGpus, request: BookingRequest, holds: Sequence[Hold], whole_nodes: bool) -> _Offer:
    have = node.count(request.gpu_type)
    offer = _Offer(node, have if node.usable else 0)
    total_held = typed_held = 0
    for hold in holds:
        if node.name not in hold.nodes or not hold.overlaps(request.start, request.end):
            continue
        offer.blocked_by.append(hold)
        if whole_nodes or hold.gpus is None:
            offer.free = 0
            continue
        on_node = hold.gpus.get(node.name, {})
        total_held += sum(on_node.values())
        typed_held += on_node.get(request.gpu_type, 0) if request.gpu_type else 0
    if offer.free:
        left_on_node = sum(node.gpus.values()) - total_held
        offer.free = max(0, min(have - typed_held, left_on_node))
    return offer


def _choose(offers: list[_Offer], gpus: int) -> tuple[str, ...] | None:
    """The fewest GPUs that fit: one node if one can, else the largest nodes first."""
    fits = [o for o in offers if o.free >= gpus]
    if fits:
        best = min(fits, key=lambda o: (o.free, o.node.name))
        return (best.node.name,)
    chosen, got = [], 0
    for o in sorted((o for o in offers if o.free), key=lambda o: (-o.free, o.node.name)):
        chosen.append(o.node.name)
        got += o.free
        if got >= gpus:
            return tuple(sorted(chosen))
    return None


def type_words(request: BookingRequest) -> str:
    kind = f"{request.gpu_type} " if request.gpu_type else ""
    return f"{request.gpus} {kind}GPU{'' if request.gpus == 1 else 's'}"


def place(request: BookingRequest, nodes: Sequence[NodeGpus], holds: Sequence[Hold],
          whole_nodes: bool = True) -> tuple[str, ...]:
    """The nodes the booking reserves (see the module docstring); BookingError (400) when the
    cluster could never give it, CapacityConflict (409) when other holds take what it needs."""
    where = f"partition {request.partition}" if request.partition else "the cluster"
    candidates = [n for n in nodes if (not request.partition or request.partition in n.partitions)
                  and n.count(request.gpu_type) > 0]
    if not candidates:
        raise BookingError("gpu_type" if request.gpu_type else "gpus",
                           f"{where} has no {request.gpu_type or 'GPU'} nodes")
    most = sum(n.count(request.gpu_type) for n in candidates)
    if request.gpus > most:
        raise BookingError("gpus", f"{type_words(request)}: {where} has {most} in all")
    offers = [_offer(n, request, holds, whole_nodes) for n in candidates]
    chosen = _choose(offers, request.gpus)
    if chosen is not None:
        return chosen
    conflicts = sorted({id(h): h for o in offers for h in o.blocked_by}.values(),
                       key=lambda h: (h.start, h.end, h.nodes, h.what))
    down = [o.node.name for o in offers if not o.node.usable]
    parts = [f"{h.what} {h.start:%Y-%m-%d %H:%M}–{h.end:%H:%M} UTC on {', '.join(h.nodes)}" for h in conflicts]
    if down:
        parts.append(f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} down or drained")
    free = sum(o.free for o in offers)
    raise CapacityConflict(f"{type_words(request)}: not free from {request.start:%Y-%m-%d %H:%M} to "
                           f"{request.end:%Y-%m-%d %H:%M} UTC ({free} free in {where}); taken by "
                           + "; ".join(parts or ["nothing known"]), conflicts)
