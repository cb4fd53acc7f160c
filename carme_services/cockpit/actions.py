"""The cockpit's actions on SLURM and the hub (pure): input checks and the argv they run.

    drain_argv("carme-n2", "fan broken")  ->  ["scontrol", "update", "NodeName=carme-n2", "State=DRAIN",
                                               "Reason=fan broken"]
    resume_argv("carme-n2")               ->  ["scontrol", "update", "NodeName=carme-n2", "State=RESUME"]

A node name must be one the hub's view lists (`check_node`); a reason is 1 to MAX_REASON
printable characters of a small set (letters, digits, space and `.,:;_-+/()@#!?'`): it is one argv
element (no shell), and SLURM keeps and prints it as it is. Every refusal is an `InputError`
naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import InputError

MAX_REASON = 128
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", re.ASCII)
REASON = re.compile(r"[A-Za-z0-9 .,:;_\-+/()@#!?']+", re.ASCII)
ACTIONS = ("drain", "resume", "stop")


def check_node(node, known: Iterable[str]) -> str:
    """`node` if it is a node name the view lists; InputError("node") otherwise."""
    if not isinstance(node, str) or not NODE_NAME.fullmatch(node):
        raise InputError("node", "must be a node name (letters, digits, '.', '_', '-')")
    names = sorted(known)
    if node not in names:
        raise InputError("node", f"SLURM lists no node {node!r} (nodes: {', '.join(names) or 'none'})")
    return node


def check_reason(reason, required: bool = True) -> str:
    """A drain reason, stripped; InputError("reason") when missing, too long or with other characters."""
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise InputError("reason", "must be text")
    reason = " ".join(reason.split())
    if not reason:
        if required:
            raise InputError("reason", "is required (SLURM keeps it with the node, sinfo -R shows it)")
        return ""
    if len(reason) > MAX_REASON:
        raise InputError("reason", f"at most {MAX_REASON} characters, not {len(reason)}")
    if not REASON.fullmatch(reason):
        bad = sorted({c for c in reason if not REASON.fullmatch(c)})
        raise InputError("reason", f"may hold letters, digits, spaces and .,:;_-+/()@#!?' only, not {''.join(bad)!r}")
    return reason


def drain_argv(node: str, reason: str) -> list[str]:
    """Drain `node` (running jobs go on, nothing new starts) with `reason`; both already checked."""
    if not NODE_NAME.fullmatch(node) or not reason or not REASON.fullmatch(reason) or len(reason) > MAX_REASON:
        raise ValueError("drain_argv: node and reason must be checked first (check_node, check_reason)")
    return ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}"]


def resume_argv(node: str) -> list[str]:
    """Resume a drained or down `node` (already checked)."""
    if not NODE_NAME.fullmatch(node):
        raise ValueError("resume_argv: the node must be checked first (check_node)")
    return ["scontrol", "update", f"NodeName={node}", "State=RESUME"]


def check_body(body: Mapping, allowed: Iterable[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError(unknown[0], f"unknown field (fields: {', '.join(sorted(allowed)) or 'none'})")


def check_server_target(body: Mapping) -> tuple[str, str]:
    """(user, server) of a stop: `user` a user name, `server` a server name ("" the default server)."""
    check_body(body, ("user", "server"))
    user, server = body.get("user"), body.get("server", "")
    if not isinstance(user, str) or not user or len(user) > 255 or "/" in user:
        raise InputError("user", "must be a user name")
    if not isinstance(server, str) or len(server) > 255 or "/" in server:
        raise InputError("server", "must be a server name (\"\" for the default server)")
    return user, server
