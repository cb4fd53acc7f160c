"""GRES and TRES strings as SLURM prints them for nodes and jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carme_slurm.gres import GresCount, parse_count, parse_gres, parse_tres

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"


@pytest.mark.parametrize("text, expected", [
    ("gpu:4", [("gpu", "", 4)]),
    ("gpu", [("gpu", "", 1)]),
    ("gpu:a100", [("gpu", "a100", 1)]),
    ("gpu:a100:4(S:0-1)", [("gpu", "a100", 4)]),
    ("gpu:a100:2(IDX:0-1),gpu:1g.10gb:0(IDX:N/A)", [("gpu", "a100", 2), ("gpu", "1g.10gb", 0)]),
    ("gpu:a100:3(IDX:0,2-3),gpu:v100:1(IDX:5)", [("gpu", "a100", 3), ("gpu", "v100", 1)]),
    ("gpu:tesla:2(S:0),mps:200", [("gpu", "tesla", 2), ("mps", "", 200)]),
    ("gpu:4(S:0)", [("gpu", "", 4)]),
    ("gpu:nvidia_a100-sxm4-80gb:8(S:0-1)", [("gpu", "nvidia_a100-sxm4-80gb", 8)]),
    ("mps:1K", [("mps", "", 1024)]),
    ("mps:2k,shard:1M", [("mps", "", 2048), ("shard", "", 1024**2)]),
    ("gpu:a100:1G", [("gpu", "a100", 1024**3)]),
    ("gres:gpu:2", [("gpu", "", 2)]),  # squeue 22.05 tres_per_node
    ("gres/gpu:a100:1", [("gpu", "a100", 1)]),  # newer tres_per_node
    # real 23.02 gres_used (slurmrestd.8): a gres named "tesla" with count 0 is printed too
    ("cpu:0,gpu:tesla:0(IDX:N/A),tesla:0,test:0",
     [("cpu", "", 0), ("gpu", "tesla", 0), ("tesla", "", 0), ("test", "", 0)]),
    ("  gpu:2  ", [("gpu", "", 2)]),
])
def test_parse_gres(text, expected):
    assert parse_gres(text) == tuple(GresCount(*e) for e in expected)


@pytest.mark.parametrize("text", ["", "(null)", "N/A", "n/a", "  ", None])
def test_nothing(text):
    assert parse_gres(text) == ()


@pytest.mark.parametrize("text, piece", [
    ("gpu:a100:x", "gpu:a100:x"),
    ("gpu::4", "gpu::4"),
    ("gpu:4,mps:lots:of", "mps:lots:of"),
    ("gpu:a:b:4", "gpu:a:b:4"),
    ("gpu 4", "gpu 4"),
    ("gpu:4(S:0)x", "gpu:4(S:0)x"),
    ("gpu:4(S:0)(S:1)", "gpu:4(S:0)(S:1)"),
    (":4", ":4"),
    ("gpu=4", "gpu=4"),
    ("gpu:-1", "gpu:-1"),
])
def test_garbled_piece_is_named(text, piece):
    with pytest.raises(ValueError) as e:
        parse_gres(text)
    assert repr(piece) in str(e.value)


@pytest.mark.parametrize("text", ["gpu:4,", ",gpu:4", "gpu:4,,mps:1", "gpu:4(S:0", "gpu:4)", "gpu:4(S:(0))"])
def test_garbled_structure(text):
    with pytest.raises(ValueError):
        parse_gres(text)


def test_not_a_string():
    with pytest.raises(ValueError):
        parse_gres(4)


def test_parse_count():
    assert parse_count("7") == 7
    assert parse_count("3K") == 3 * 1024
    assert parse_count("1T") == 1024**4
    with pytest.raises(ValueError):
        parse_count("1.5K")


@given(st.text())
def test_any_text_parses_or_raises_value_error(text):
    try:
        result = parse_gres(text)
    except ValueError:
        return
    assert all(isinstance(g, GresCount) and g.count >= 0 for g in result)


@given(st.text(alphabet="gpu:a10(IDX)S-N/,KMG._ 0123456789", max_size=40))
def test_gres_like_text_parses_or_raises_value_error(text):
    try:
        parse_gres(text)
    except ValueError:
        pass


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s not in ("gres", "none"))
_types = st.from_regex(r"[a-z][a-z0-9_.\-]{0,10}", fullmatch=True)


@given(st.lists(st.tuples(_names, st.one_of(st.just(""), _types), st.integers(0, 10**6),
                          st.sampled_from(["", "(S:0-1)", "(IDX:0,2-3)", "(IDX:N/A)"])), min_size=1, max_size=5))
def test_printed_gres_round_trips(pieces):
    text = ",".join(f"{n}:{t + ':' if t else ''}{c}{p}" for n, t, c, p in pieces)
    assert parse_gres(text) == tuple(GresCount(n, t, c) for n, t, c, _ in pieces)


def test_real_node_gres_from_fixtures():
    for name in ("sinfo-22.05-idle.json", "sinfo-22.05-gpu-allocated.json", "scontrol-show-node-23.02-v0.0.39.json",
                 "scontrol-show-node-24.11-v0.0.42.json"):
        for node in json.loads((FIXTURES / name).read_text())["nodes"]:
            for key in ("gres", "gres_used", "gres_drained"):
                parse_gres(node[key])  # never raises on what SLURM really prints


# ---- TRES ------------------------------------------------------------------------------------------


def test_parse_tres_example():
    assert parse_tres("cpu=8,mem=8G,billing=8,gres/gpu=4,gres/gpu:a100=2") == {
        "cpu": 8, "mem": 8192, "billing": 8, "gres/gpu": 4, "gres/gpu:a100": 2}


@pytest.mark.parametrize("text, mem", [
    ("mem=256M", 256), ("mem=8G", 8192), ("mem=1T", 1024**2), ("mem=512", 512), ("mem=1.50G", 1536),
    ("mem=2048K", 2), ("mem=15678M", 15678),
])
def test_memory_in_mib(text, mem):
    assert parse_tres(text) == {"mem": mem}


def test_other_units():
    assert parse_tres("fs/disk=1K,bb/datawarp=2G,node=1,energy=0") == {
        "fs/disk": 1024, "bb/datawarp": 2048, "node": 1, "energy": 0}


def test_real_tres():
    node = json.loads((FIXTURES / "scontrol-show-node-23.02-v0.0.39.json").read_text())["nodes"][0]
    assert parse_tres(node["tres"]) == {
        "cpu": 24, "mem": 15678, "billing": 39, "gres/gpu": 4, "gres/gpu:tesla": 4, "gres/test": 8}
    used = json.loads((FIXTURES / "sinfo-22.05-gpu-allocated.json").read_text())["nodes"][0]["tres_used"]
    assert parse_tres(used) == {"cpu": 1, "mem": 256}


@pytest.mark.parametrize("text", ["", None, "(null)", "  "])
def test_tres_nothing(text):
    assert parse_tres(text) == {}


@pytest.mark.parametrize("text", ["cpu", "cpu=x", "=3", "cpu=00:00:00", "cpu=8,,mem=1G", "cpu=-1"])
def test_tres_garbled(text):
    with pytest.raises(ValueError):
        parse_tres(text)


@given(st.text())
def test_tres_any_text_parses_or_raises_value_error(text):
    try:
        parse_tres(text)
    except ValueError:
        pass
