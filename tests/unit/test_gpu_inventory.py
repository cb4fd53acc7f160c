"""The cluster's GPUs by partition and type, from one nodes snapshot."""

from __future__ import annotations

from carme_slurm.gpu_inventory import ANY_TYPE, gpu_inventory, type_memory_gb
from carme_slurm.nodes import GpuCount, SlurmNode


def node(name, gpus, state="mixed", flags=(), partitions=("interactive", "batch")):
    return SlurmNode(name=name, address="127.0.0.1", state=state, flags=tuple(flags), partitions=tuple(partitions),
                     cpus=8, alloc_cpus=0, memory_mb=8192, alloc_memory_mb=0,
                     gpus=tuple(GpuCount(*g) for g in gpus), reason="")


N1 = node("carme-n1", [("a100", 4, 3)])
N2 = node("carme-n2", [("a100", 2, 0), ("1g.10gb", 4, 1)])


def test_free_in_use_and_the_most_one_node_has_per_partition_and_type():
    inventory = gpu_inventory([N2, N1])
    a100 = inventory["interactive"]["a100"]
    assert (a100.free, a100.in_use, a100.unavailable, a100.total, a100.most_on_a_node) == (3, 3, 0, 6, 4)
    assert a100.nodes == ["carme-n1", "carme-n2"] and a100.free_by_node == {"carme-n1": 1, "carme-n2": 2}
    mig = inventory["batch"]["1g.10gb"]
    assert (mig.free, mig.in_use, mig.most_on_a_node, mig.nodes) == (3, 1, 4, ["carme-n2"])
    any_type = inventory["interactive"][ANY_TYPE]
    assert (any_type.free, any_type.in_use, any_type.total, any_type.most_on_a_node) == (6, 4, 10, 6)
    assert list(inventory["interactive"]) == ["", "1g.10gb", "a100"]  # sorted by name


def test_a_drained_or_down_node_s_idle_gpus_are_unavailable_not_free():
    drained = node("carme-n2", [("a100", 2, 1)], state="draining", flags=("DRAIN",))
    down = node("carme-n3", [("a100", 4, 0)], state="down")
    a100 = gpu_inventory([N1, drained, down])["interactive"]["a100"]
    assert (a100.free, a100.in_use, a100.unavailable, a100.most_on_a_node) == (1, 4, 5, 4)


def test_an_allocated_node_has_no_free_gpus_and_untyped_gpus_count_for_any_type_only():
    full = node("carme-n1", [("a100", 4, 2)], state="allocated")  # every CPU taken
    plain = node("old-n1", [("", 2, 0)], partitions=("legacy",))
    inventory = gpu_inventory([full, plain, node("cpu-n1", [], partitions=("cpu",))])
    assert inventory["interactive"]["a100"].free == 0 and inventory["interactive"]["a100"].unavailable == 2
    assert list(inventory["legacy"]) == [ANY_TYPE] and inventory["legacy"][ANY_TYPE].free == 2
    assert inventory["cpu"] == {}


def test_gpu_memory_comes_from_the_site_or_a_mig_slice_s_name():
    assert type_memory_gb("a100", {"a100": 80}) == 80.0
    assert type_memory_gb("1g.10gb") == 10.0 and type_memory_gb("3g.40gb") == 40.0
    assert type_memory_gb("a100") is None and type_memory_gb("") is None
