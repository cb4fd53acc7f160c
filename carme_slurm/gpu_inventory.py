"""The cluster's GPUs by partition and type, from one snapshot of the nodes (pure).

Everything that shows or checks GPU types reads this, over the nodes the hub's one view holds:

    gpu_inventory(nodes)  {partition: {type: TypeCount(free, in_use, unavailable, most_on_a_node)}}

- `free`: GPUs a new job could get now (on nodes that take jobs, see `SlurmNode.gpus_reachable`);
- `in_use`: allocated to jobs;
- `unavailable`: idle GPUs of nodes that are down, drained, failing or reserved;
- `most_on_a_node`: the most GPUs of that type one node of the partition has (whatever its
  state): a server runs on one node, so more of that type can never be given to it.

Types are SLURM's gres types ("a100", "1g.10gb"); untyped GPUs are type "". The key ANY_TYPE
("") of a partition's mapping counts all types together, typed and untyped, as "any type" asks.
A node's GPU count is the same in every partition it belongs to (partitions may share nodes and
mix types).

`type_memory_gb(type, configured)`: a type's GPU memory, from the site's setting or, for MIG
slices named like "1g.10gb" / "3g.40gb", from the name; None when nobody says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .nodes import SlurmNode

__all__ = ["ANY_TYPE", "WHOLE_CLUSTER", "TypeCount", "gpu_inventory", "type_memory_gb"]

ANY_TYPE = ""
WHOLE_CLUSTER = "*"
_MIG_NAME = re.compile(r"[0-9]+g\.([0-9]+)gb", re.ASCII)


@dataclass
class TypeCount:
    """GPUs of one type in one partition (see the module docstring)."""

    free: int = 0
    in_use: int = 0
    unavailable: int = 0
    most_on_a_node: int = 0
    free_by_node: dict[str, int] = field(default_factory=dict)  # every node with this type, its free GPUs

    @property
    def total(self) -> int:
        return self.free + self.in_use + self.unavailable

    def to_dict(self) -> dict:
        return {"free": self.free, "in_use": self.in_use, "unavailable": self.unavailable,
                "total": self.total, "most_on_a_node": self.most_on_a_node, "free_by_node": dict(self.free_by_node)}

    @property
    def nodes(self) -> list[str]:
        return list(self.free_by_node)


def _add(counts: dict[str, TypeCount], gpu_type: str, node: SlurmNode, total: int, in_use: int) -> None:
    count = counts.setdefault(gpu_type, TypeCount())
    idle = max(total - in_use, 0)
    count.in_use += min(in_use, total)
    if node.gpus_reachable:
        count.free += idle
    else:
        count.unavailable += idle
    count.most_on_a_node = max(count.most_on_a_node, total)
    count.free_by_node[node.name] = count.free_by_node.get(node.name, 0) + (idle if node.gpus_reachable else 0)


def gpu_inventory(nodes: Iterable[SlurmNode], by_partition: bool = True) -> dict[str, dict[str, TypeCount]]:
    """{partition: {gpu type: TypeCount}} over `nodes`, with ANY_TYPE ("") for all types together.
    Partitions without GPUs are present with an empty mapping; types are sorted by name. With
    `by_partition=False`, the whole cluster once (each node counted once), under WHOLE_CLUSTER."""
    out: dict[str, dict[str, TypeCount]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        for partition in node.partitions if by_partition else (WHOLE_CLUSTER,):
            counts = out.setdefault(partition, {})
            if not node.gpus:
                continue
            for gpu in node.gpus:
                if gpu.type:
                    _add(counts, gpu.type, node, gpu.total, gpu.allocated)
            _add(counts, ANY_TYPE, node, node.gpus_total, node.gpus_allocated)
    return {p: dict(sorted(counts.items())) for p, counts in out.items()}


def type_memory_gb(gpu_type: str, configured: Mapping[str, int | float] | None = None) -> float | None:
    """The GPU memory of `gpu_type` in GB: the site's figure, else a MIG slice's from its name."""
    if configured and gpu_type in configured:
        return float(configured[gpu_type])
    m = _MIG_NAME.fullmatch(gpu_type)
    return float(m.group(1)) if m else None
