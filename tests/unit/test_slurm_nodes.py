"""Nodes and their GPUs from `sinfo --json` (22.05, 23.02+) and `scontrol show node --json` (23.02+)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from carme_slurm.nodes import GpuCount, SlurmNode, parse_sinfo_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def doc(name: str) -> dict:
    return json.loads(fixture(name))


def one_node(raw: dict, base: dict) -> SlurmNode:
    """`base` (a whole document) with its first node changed by `raw`, parsed."""
    d = copy.deepcopy(base)
    d["nodes"] = [{**d["nodes"][0], **raw}]
    [node] = parse_sinfo_json(json.dumps(d))
    return node


V38 = doc("sinfo-22.05-idle.json")
V42 = doc("scontrol-show-node-24.11-v0.0.42.json")


# ---- real outputs ----------------------------------------------------------------------------------


def test_22_05_idle():
    nodes = parse_sinfo_json(fixture("sinfo-22.05-idle.json"))
    assert [n.name for n in nodes] == ["carme-n1", "carme-n2"]
    n1 = nodes[0]
    assert n1 == SlurmNode(
        name="carme-n1", address="127.0.0.1", state="idle", flags=(), partitions=("interactive", "batch"),
        cpus=8, alloc_cpus=0, memory_mb=8192, alloc_memory_mb=0, gpus=(GpuCount("", 4, 0),), reason="")
    assert (n1.available, n1.gpus_total, n1.gpus_allocated, n1.gpus_free) == (True, 4, 0, 4)


def test_22_05_with_a_gpu_job():
    n1, n2 = parse_sinfo_json(fixture("sinfo-22.05-gpu-allocated.json"))
    assert (n1.state, n1.alloc_cpus, n1.alloc_memory_mb) == ("mixed", 1, 256)
    assert n1.gpus == (GpuCount("", 4, 2),)
    assert (n1.gpus_allocated, n1.gpus_free, n1.available) == (2, 2, True)
    assert (n2.state, n2.gpus_free) == ("idle", 4)


def test_23_02_scontrol_show_node():
    [node] = parse_sinfo_json(fixture("scontrol-show-node-23.02-v0.0.39.json"))
    assert (node.name, node.address, node.state, node.flags, node.partitions) == (
        "node01", "kitt", "idle", (), ("debug",))
    assert (node.cpus, node.memory_mb) == (24, 15678)
    # "cpu:24,gpu:tesla:4(S:0),test:8" / "cpu:0,gpu:tesla:0(IDX:N/A),tesla:0,test:0": only "gpu" counts
    assert node.gpus == (GpuCount("tesla", 4, 0),)


def test_24_11_scontrol_show_node_two_types():
    [node] = parse_sinfo_json(fixture("scontrol-show-node-24.11-v0.0.42.json"))
    assert (node.name, node.address, node.state) == ("host1", "localhost", "idle")
    assert node.gpus == (GpuCount("fake1", 1, 0), GpuCount("fake2", 1, 0))
    assert (node.cpus, node.memory_mb, node.gpus_total, node.gpus_free) == (32, 127927, 2, 2)


def test_sinfo_groups_of_newer_releases():
    nodes = {n.name: n for n in parse_sinfo_json(fixture("sinfo-24.05-v0.0.41-constructed.json"))}
    assert list(nodes) == ["gpu01", "gpu02", "gpu03", "gpu04"]  # each once, though listed per partition
    assert nodes["gpu01"].partitions == ("interactive", "batch")
    assert nodes["gpu04"].partitions == ("interactive",)
    g1 = nodes["gpu01"]
    assert (g1.state, g1.cpus, g1.alloc_cpus, g1.memory_mb, g1.alloc_memory_mb) == ("mixed", 8, 2, 65536, 16384)
    assert g1.gpus == (GpuCount("a100", 4, 2),)
    assert nodes["gpu02"] == dataclasses.replace(nodes["gpu03"], name="gpu02")
    assert (nodes["gpu02"].cpus, nodes["gpu02"].gpus_free) == (8, 4)  # a two-node group: per node
    g4 = nodes["gpu04"]
    assert (g4.state, g4.flags, g4.reason, g4.available, g4.gpus_free) == (
        "drained", ("DRAIN",), "fan broken", False, 0)
    assert g4.gpus[0].free == 4  # the GPUs are idle, just not to be had


def test_to_dict_is_json_ready():
    n1, _ = parse_sinfo_json(fixture("sinfo-22.05-gpu-allocated.json"))
    d = json.loads(json.dumps(n1.to_dict()))
    assert d["gpus"] == [{"type": "", "total": 4, "allocated": 2, "free": 2}]
    assert (d["gpus_total"], d["gpus_allocated"], d["gpus_free"], d["available"]) == (4, 2, 2, True)
    assert d["partitions"] == ["interactive", "batch"] and d["flags"] == []
    assert {"name", "address", "state", "cpus", "alloc_cpus", "memory_mb", "alloc_memory_mb", "reason"} <= set(d)


# ---- states and availability ----------------------------------------------------------------------


@pytest.mark.parametrize("state, flags, word, available", [
    ("idle", [], "idle", True),
    ("mixed", [], "mixed", True),
    ("allocated", [], "allocated", True),
    ("idle", ["DRAIN"], "drained", False),
    ("mixed", ["DRAIN"], "draining", False),
    ("allocated", ["DRAIN"], "draining", False),
    ("idle", ["COMPLETING", "DRAIN"], "draining", False),
    ("idle", ["COMPLETING"], "completing", True),
    ("down", ["NOT_RESPONDING"], "down", False),
    ("idle", ["NOT_RESPONDING"], "idle", False),
    ("idle", ["FAIL"], "fail", False),
    ("allocated", ["FAIL"], "failing", False),
    ("idle", ["MAINTENANCE", "RESERVED"], "idle", False),
    ("idle", ["RESERVED"], "idle", False),
    ("idle", ["POWERED_DOWN"], "idle", True),  # power saving: SLURM boots it for a job
    ("idle", ["POWERING_UP"], "idle", True),
    ("idle", ["POWERING_DOWN"], "idle", False),
    ("idle", ["REBOOT_REQUESTED"], "idle", True),
    ("idle", ["REBOOT_ISSUED"], "idle", False),
    ("idle", ["CLOUD", "PLANNED"], "idle", True),
    ("future", [], "future", False),
    ("unknown", [], "unknown", False),
])
def test_state_v0_0_38(state, flags, word, available):
    node = one_node({"state": state, "state_flags": flags}, V38)
    assert (node.state, node.flags, node.available) == (word, tuple(flags), available)
    assert node.gpus_free == (4 if available and word != "allocated" else 0)


@pytest.mark.parametrize("state, word, flags, available", [
    (["IDLE"], "idle", (), True),
    (["MIXED", "DRAIN"], "draining", ("DRAIN",), False),
    (["IDLE", "DRAIN"], "drained", ("DRAIN",), False),
    (["DOWN", "NOT_RESPONDING"], "down", ("NOT_RESPONDING",), False),
    (["DOWN", "DRAIN"], "drained", ("DRAIN",), False),  # as sinfo says: DRAIN comes first
    (["DRAIN", "IDLE"], "drained", ("DRAIN",), False),  # order does not matter
    (["IDLE", "MAINTENANCE", "RESERVED"], "idle", ("MAINTENANCE", "RESERVED"), False),
    ([], "unknown", (), False),
])
def test_state_lists_of_newer_releases(state, word, flags, available):
    node = one_node({"state": state}, V42)
    assert (node.state, node.flags, node.available) == (word, flags, available)


def test_allocated_node_has_no_free_gpus():
    """ALLOCATED: every CPU taken or an exclusive job; unused GPUs there cannot be had."""
    node = one_node({"state": "allocated", "gres_used": "gpu:1"}, V38)
    assert node.available and node.gpus[0].free == 3 and node.gpus_free == 0


# ---- GPUs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gres, used, gpus", [
    ("gpu:a100:4(S:0-1)", "gpu:a100:2(IDX:0-1)", [("a100", 4, 2)]),
    ("gpu:a100:2(S:0),gpu:1g.10gb:4(S:1)", "gpu:a100:1(IDX:0),gpu:1g.10gb:0(IDX:N/A)",
     [("a100", 2, 1), ("1g.10gb", 4, 0)]),
    ("gpu:4", "gpu:tesla:3(IDX:0-2)", [("", 4, 3)]),  # one side untyped: the same GPUs
    ("gpu:tesla:4(S:0)", "gpu:1", [("tesla", 4, 1)]),
    ("gpu:tesla:2(S:0),mps:200", "gpu:tesla:0(IDX:N/A),mps:0", [("tesla", 2, 0)]),
    ("(null)", "gpu:0", []),
    ("mps:100", "mps:50", []),
    ("gpu:a100:2", "gpu:a100:1,gpu:v100:1", [("a100", 2, 1), ("v100", 0, 1)]),  # used, not configured: kept
    (None, None, []),
])
def test_gpus_per_type(gres, used, gpus):
    node = one_node({"gres": gres, "gres_used": used}, V38)
    assert node.gpus == tuple(GpuCount(*g) for g in gpus)


def test_overallocated_gpus_free_is_never_negative():
    node = one_node({"gres": "gpu:2", "gres_used": "gpu:3"}, V38)
    assert (node.gpus[0].free, node.gpus_free) == (0, 0)


def test_numbers_as_set_infinite_number():
    node = one_node({"cpus": {"set": True, "infinite": False, "number": 16},
                     "alloc_cpus": {"set": False, "infinite": False, "number": 99},
                     "real_memory": {"set": False, "infinite": True, "number": 0}}, V42)
    assert (node.cpus, node.alloc_cpus, node.memory_mb) == (16, 0, 0)


def test_a_node_listed_twice_appears_once():
    d = copy.deepcopy(V38)
    first = d["nodes"][0]
    d["nodes"] = [{**first, "partitions": ["interactive"]}, d["nodes"][1], {**first, "partitions": ["batch"]}]
    nodes = parse_sinfo_json(json.dumps(d))
    assert [n.name for n in nodes] == ["carme-n1", "carme-n2"]
    assert nodes[0].partitions == ("interactive", "batch")


def test_partitions_as_comma_string():
    assert one_node({"partitions": "a,b"}, V38).partitions == ("a", "b")


# ---- what is refused ------------------------------------------------------------------------------


def test_errors_raise():
    d = copy.deepcopy(V42)
    d["errors"] = [{"description": "Unable to contact slurm controller", "error_number": 1007}]
    with pytest.raises(ValueError, match="Unable to contact slurm controller"):
        parse_sinfo_json(json.dumps(d))


@pytest.mark.parametrize("text", [
    '{"meta": {}, "errors": []}', '{"nodes": {}}', '{"sinfo": "x"}', "[]", "null", "not json", "",
    '{"nodes": [1]}', '{"nodes": [{"state": "idle"}]}', '{"sinfo": [{"nodes": {"nodes": "gpu[01-02]"}}]}',
    '{"sinfo": [{"nodes": {"nodes": ["a"]}, "cpus": 8}]}',
    '{"nodes": [{"name": "n", "cpus": "many"}]}', '{"nodes": [{"name": "n", "gres": "gpu:lots:of"}]}',
])
def test_malformed_documents_raise_value_error(text):
    with pytest.raises(ValueError):
        parse_sinfo_json(text)


def test_empty_lists_are_no_nodes():
    assert parse_sinfo_json('{"nodes": [], "errors": []}') == []
    assert parse_sinfo_json('{"sinfo": [], "errors": [], "warnings": []}') == []


def test_a_nodes_tmp_disk_is_read_in_both_shapes():
    """TmpDisk (the node's local scratch, MB): 22.05's temporary_disk, 24.05's sinfo groups' disk.minimum."""
    doc = json.loads(fixture("sinfo-22.05-idle.json"))
    doc["nodes"][0]["temporary_disk"] = 100000
    nodes = parse_sinfo_json(json.dumps(doc))
    assert nodes[0].tmp_disk_mb == 100000 and nodes[0].to_dict()["tmp_disk_mb"] == 100000
    doc = json.loads(fixture("sinfo-24.05-v0.0.41-constructed.json"))
    doc["sinfo"][0]["disk"]["minimum"] = 50000
    assert parse_sinfo_json(json.dumps(doc))[0].tmp_disk_mb == 50000
