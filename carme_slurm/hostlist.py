"""SLURM hostlist expressions ("carme-n[1-3,7],gpu[01-02]") as node names (pure)."""

from __future__ import annotations

import re

__all__ = ["expand_hostlist", "split_outside"]

_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
MAX_HOSTS = 100_000


def split_outside(text: str, opening: str, closing: str, what: str) -> list[str]:
    """`text` split at the commas outside `opening`...`closing` (unbalanced ones raise ValueError
    naming `what`); empty pieces kept."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {closing!r} in {what} {text!r}")
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced {opening!r} in {what} {text!r}")
    pieces.append(text[start:])
    return pieces


def _expand_one(expr: str) -> list[str]:
    opening = expr.find("[")
    if opening < 0:
        return [expr]
    closing = expr.index("]", opening)
    head, body, tail = expr[:opening], expr[opening + 1:closing], expr[closing + 1:]
    names = []
    for piece in body.split(","):
        match = _RANGE.fullmatch(piece)
        if not match:
            raise ValueError(f"bad range {piece!r} in hostlist {expr!r}")
        first, last = match.group(1), match.group(2) or match.group(1)
        if int(last) < int(first) or int(last) - int(first) > MAX_HOSTS:
            raise ValueError(f"bad range {piece!r} in hostlist {expr!r}")
        width = len(first) if first.startswith("0") else 0
        names += [f"{head}{n:0{width}d}" for n in range(int(first), int(last) + 1)]
    return [name + rest for name in names for rest in _expand_one(tail)]


def expand_hostlist(text: str) -> list[str]:
    """The node names of a hostlist expression, in order ("" and "(null)" give [])."""
    text = (text or "").strip()
    if text in ("", "(null)", "None"):
        return []
    out: list[str] = []
    for part in (p for p in split_outside(text, "[", "]", "hostlist") if p):
        out += _expand_one(part)
    return out
