"""SLURM generic resources (GRES) and trackable resources (TRES) as printed (pure).

Two parsers, both standard library only, no I/O:

`parse_gres(text)` reads a GRES string as SLURM prints it for nodes (`Gres=`,
`GresUsed`, the `gres` / `gres_used` fields of `sinfo --json` and
`scontrol show node --json`) and for jobs (`tres_per_node`, `gres_detail`):

    gpu:4                                   untyped, 4
    gpu:a100:4(S:0-1)                       typed, with socket affinity
    gpu:a100:3(IDX:0,2-3),gpu:1g.10gb:0(IDX:N/A)   in use, with indexes
    gpu:tesla:2(S:0),mps:200,shard:1K       several names; K/M/G/T/P = 1024**n
    gres:gpu:2  gres/gpu:2                  job forms (the prefix is dropped)
    gpu  gpu:a100                           a request without count: 1
    ""  "(null)"  "N/A"  None               nothing: ()

The parenthesised part (socket or index list) is checked for balance and
dropped. Commas inside it (IDX:0,2-3) do not split pieces. Anything else
raises ValueError naming the piece.

`parse_tres(text)` reads a TRES string (`CfgTRES=`, `AllocTRES=`, the `tres`
field of nodes, jobs and reservations): "cpu=8,mem=8G,billing=8,gres/gpu=4"
-> {"cpu": 8, "mem": 8192, "billing": 8, "gres/gpu": 4}. Memory-like TRES
(mem, vmem, bb/*) are returned in MiB, as SLURM counts them; the others
(fs/disk, ic/*) in their base unit.
"""

# ruff: noqa: TRY004  (malformed SLURM output, wrong JSON types included, is a ValueError by contract)

from __future__ import annotations

import re
from dataclasses import dataclass

from .hostlist import split_outside

__all__ = ["GresCount", "gpu_indexes", "parse_count", "parse_gres", "parse_tres"]

_EMPTY = {"", "(null)", "n/a", "none"}
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
# Names and types: what SLURM and NVML autodetection produce (a100, 1g.10gb,
# nvidia_a100-sxm4-80gb, tesla_v100+nvlink); no separators, no spaces.
_WORD = r"[A-Za-z0-9_][A-Za-z0-9_.\-+]*"
_COUNT_RE = re.compile(r"(\d+)([KMGTPkmgtp]?)")
_PIECE_RE = re.compile(
    rf"(?P<name>{_WORD})(?::(?P<a>{_WORD}))?(?::(?P<b>{_WORD}))?(?P<paren>\([^()]*\))?",
    re.ASCII,
)
_TRES_NUM_RE = re.compile(r"(\d+(?:\.\d+)?)([KMGTPkmgtp]?)")


@dataclass(frozen=True)
class GresCount:
    """One GRES piece: `name` ("gpu", "mps", "shard"), `type` ("" when untyped), `count`."""

    name: str
    type: str
    count: int


def parse_count(text: str) -> int:
    """A GRES count: decimal digits with an optional K/M/G/T/P suffix (powers of 1024)."""
    m = _COUNT_RE.fullmatch(text)
    if not m:
        raise ValueError(f"not a GRES count: {text!r}")
    return int(m.group(1)) * 1024 ** _POWERS[m.group(2).lower()]


def _is_count(text: str | None) -> bool:
    return text is not None and _COUNT_RE.fullmatch(text) is not None


def _split_outside_parens(text: str) -> list[str]:
    """Split on commas that are not inside (...); unbalanced parentheses raise."""
    return split_outside(text, "(", ")", "GRES string")


def _parse_piece(piece: str) -> GresCount:
    body = piece
    for prefix in ("gres:", "gres/"):
        if body.startswith(prefix):
            body = body[len(prefix):]
            break
    m = _PIECE_RE.fullmatch(body)
    if not m:
        raise ValueError(f"unparsable GRES piece {piece!r}")
    name, a, b = m.group("name"), m.group("a"), m.group("b")
    if b is not None:  # name:type:count
        if not _is_count(b):
            raise ValueError(f"GRES piece {piece!r}: count {b!r} is not a number")
        return GresCount(name, a, parse_count(b))
    if a is None:  # bare name: one of it (a request)
        return GresCount(name, "", 1)
    if _is_count(a):  # name:count
        return GresCount(name, "", parse_count(a))
    return GresCount(name, a, 1)  # name:type (a request for one)


def parse_gres(text: str | None) -> tuple[GresCount, ...]:
    """Parse a SLURM GRES string (see the module docstring) into GresCount pieces, in order.

    Pieces are not merged: "gpu:a100:2,gpu:a100:1" gives two. Raises ValueError
    naming the piece for anything that is not GRES syntax (empty pieces too).
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        raise ValueError(f"GRES must be a string, not {type(text).__name__}")
    text = text.strip()
    if text.lower() in _EMPTY:
        return ()
    out = []
    for piece in _split_outside_parens(text):
        if not piece:
            raise ValueError(f"empty GRES piece in {text!r}")
        out.append(_parse_piece(piece))
    return tuple(out)


def _tres_value(key: str, raw: str) -> int:
    m = _TRES_NUM_RE.fullmatch(raw)
    if not m:
        raise ValueError(f"TRES {key}: value {raw!r} is not a number")
    number, power = float(m.group(1)), _POWERS[m.group(2).lower()]
    if key in ("mem", "vmem") or key.startswith("bb/"):
        # SLURM prints these in MiB: no suffix = M, K = 1/1024 of a MiB.
        return round(number * 1024 ** (power - 2 if power else 0))
    return round(number * 1024 ** power)


def parse_tres(text: str | None) -> dict[str, int]:
    """Parse "key=value,..." TRES into {key: int}; mem/vmem/bb/* in MiB.

    "", None and "(null)" give {}. Repeated keys: the last wins. A piece
    without "=" or with a non-numeric value raises ValueError.
    """
    if text is None:
        return {}
    if not isinstance(text, str):
        raise ValueError(f"TRES must be a string, not {type(text).__name__}")
    text = text.strip()
    if text.lower() in _EMPTY:
        return {}
    out: dict[str, int] = {}
    for piece in text.split(","):
        key, sep, raw = piece.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"unparsable TRES piece {piece!r}")
        out[key] = _tres_value(key, raw.strip())
    return out


_IDX = re.compile(r"\(IDX:([^)]*)\)")


def gpu_indexes(detail: str) -> tuple[int, ...]:
    """The GPU device indexes on one node from a job's `gres_detail` entry (squeue --json; the
    `GRES=` of `scontrol show job -d`): "gpu:a100:2(IDX:0,2),gpu:1g.10gb:1(IDX:4)" -> (0, 2, 4).
    Other GRES (mps, shard) are not GPUs; ValueError on an index list SLURM would not print."""
    out: set[int] = set()
    for piece in split_outside(detail or "", "(", ")", "gres_detail"):
        name = piece.strip().removeprefix("gres:").removeprefix("gres/").split(":", 1)[0]
        match = _IDX.search(piece)
        if name != "gpu" or not match or match[1] == "N/A":
            continue
        for part in match[1].split(","):
            first, _, last = part.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                raise ValueError(f"gres_detail: bad index list in {piece!r:.80}")
            out.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(out))
