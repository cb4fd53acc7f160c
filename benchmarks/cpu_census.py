"""Where a benchmark's CPU went: CPU seconds by kind of process over a window, read from /proc.

A thread reads every process's utime + stime from /proc/PID/stat every `every` seconds between
start() and stop(); a process's share is its last reading minus its first (or minus nothing when it
was born inside the window). A process shorter than one reading is missed: sbatch, sudo and the
prolog's helpers are undercounted, the long-lived ones are not. Kinds are named from the command
line (the hub, each Carme service, the launcher, the servers, slurmd, slurmstepd, ...).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")


def kind_of(comm: str, argv: list[str]) -> str:
    words = " ".join(argv)
    for needle, kind in (("carme_services.", None), ("carme_spawner.launcher", "launcher (node)"),
                         ("tiny-singleuser", "single-user servers"), ("configurable-http-proxy", "proxy"),
                         ("api_probe.py", "API probe"), ("jupyterhub", "hub")):
        if needle in words:
            if kind is None:  # one kind per service: python -m carme_services.<name>[.service]
                module = next(a for a in argv if a.startswith("carme_services."))
                return "service " + module.split(".")[1]
            return kind
    return comm


class CpuCensus(threading.Thread):
    def __init__(self, every: float = 0.1):
        super().__init__(daemon=True)
        self.every = every
        self.halt = threading.Event()
        self.first: dict[int, tuple[str, int]] = {}
        self.last: dict[int, int] = {}
        self.began = self.ended = 0.0

    def read(self, born_inside: bool) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                fields = stat[stat.rindex(")") + 2:].split()
                ticks = int(fields[11]) + int(fields[12])
                if pid not in self.first:
                    with open(f"/proc/{pid}/cmdline") as f:
                        argv = f.read().split("\0")
                    comm = stat[stat.index("(") + 1:stat.rindex(")")]
                    self.first[pid] = (kind_of(comm, argv), 0 if born_inside else ticks)
                self.last[pid] = ticks
            except (OSError, ValueError, IndexError):
                continue

    def run(self) -> None:
        self.began = time.monotonic()
        self.read(born_inside=False)
        while not self.halt.wait(self.every):
            self.read(born_inside=True)
        self.ended = time.monotonic()

    def stop(self) -> dict:
        self.halt.set()
        self.join(10)
        seconds, count = Counter(), Counter()
        for pid, (kind, first) in self.first.items():
            seconds[kind] += (self.last.get(pid, first) - first) / TICK
            count[kind] += 1
        total = sum(seconds.values())
        return {"window_s": round(self.ended - self.began, 1), "cpu_s": round(total, 1),
                "by_kind": {k: {"cpu_s": round(s, 2), "processes": count[k]} for k, s in seconds.most_common() if s >= 0.05}}
