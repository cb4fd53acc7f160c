"""Processes listening on TCP ports, from /proc (no psmisc here): the harness frees a test hub's
ports when its proxy or services outlive it. JupyterHub starts configurable-http-proxy in a
session of its own, so a hub that dies before its clean-up leaves the proxy (and the services)
on the hub's ports, and every later hub on them fails."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"


def _listening_inodes(ports: set[int]) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) in ports:
                inodes.add(fields[9])
    return inodes


def listeners(ports: Iterable[int]) -> dict[int, str]:
    """{pid: command line} of the processes listening on any of `ports`."""
    inodes = _listening_inodes(set(ports))
    found: dict[int, str] = {}
    if not inodes:
        return found
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    break
        except OSError:
            continue
    return found


def free_ports(ports: Iterable[int], wait: float = 5.0) -> dict[int, str]:
    """SIGTERM whatever listens on `ports` (then SIGKILL after `wait`); what was found."""
    ports = tuple(ports)
    found = listeners(ports)
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while found and listeners(ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in listeners(ports):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return found
