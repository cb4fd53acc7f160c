"""The time of each step of one spawn: for the hub log (one line per spawn), the progress events
and a Prometheus histogram per step (JupyterHub's /hub/metrics serves it).

Steps, in order, as seconds since the spawn was requested (JupyterHub's apply_user_options):

    options parsed, admitted, script rendered, sbatch returned,
    running in SLURM (the first snapshot of the hub's view that shows the job RUNNING),
    launcher started (the job's own clock, from its output), port reported,
    container exec (the job's own clock), HTTP answered, proxy route added

The two steps on the job's clock come from lines the launcher prints to the job's output, read
as the user after the server is up (off the spawn's path). They are the job's words: used for
timing only, and kept only when they fall between the submission and now.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Histogram

STEPS = (
    "options parsed", "admitted", "script rendered", "sbatch returned", "running in SLURM",
    "launcher started", "port reported", "container exec", "HTTP answered", "proxy route added",
)
JOB_CLOCK_STEPS = ("launcher started", "container exec")
# "port N chosen; exec at" since the report runs beside the exec ("port N reported; exec at" before)
LAUNCHER_LINE = re.compile(r"carme launcher: (?:port [0-9]+ (?:chosen|reported); )?(started|exec) at ([0-9]{9,11}\.[0-9]{1,9})")

SPAWN_STEP_SECONDS = Histogram(
    "carme_spawn_step_seconds",
    "Seconds from a spawn's request to each of its steps",
    ["step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)


class SpawnSteps:
    """When each step of one spawn happened, in seconds since it was requested."""

    def __init__(self, clock=time.monotonic, wall=time.time):
        self._clock, self._wall = clock, wall
        self.started, self.started_wall = clock(), wall()
        self.seconds: dict[str, float] = {}

    def mark(self, step: str) -> None:
        if step not in STEPS:
            raise ValueError(f"unknown spawn step {step!r}")
        self.seconds.setdefault(step, round(self._clock() - self.started, 3))

    def mark_job_clock(self, log_text: str, submitted_wall: float) -> None:
        """The launcher's own times from the job's output, when plausible (after submission, not in
        the future): the job's words, for timing only."""
        now = self._wall()
        for kind, stamp in LAUNCHER_LINE.findall(log_text or ""):
            at = float(stamp)
            if submitted_wall <= at <= now:
                step = "launcher started" if kind == "started" else "container exec"
                self.seconds.setdefault(step, round(at - self.started_wall, 3))

    def as_dict(self) -> dict[str, float]:
        return {step: self.seconds[step] for step in STEPS if step in self.seconds}

    def line(self) -> str:
        return ", ".join(f"{step} {seconds:.3f} s" for step, seconds in self.as_dict().items())

    def observe(self) -> None:
        for step, seconds in self.as_dict().items():
            SPAWN_STEP_SECONDS.labels(step).observe(max(0.0, seconds))


async def log_steps_once_routed(steps: SpawnSteps, route_added: asyncio.Event, same_job: Callable[[], bool],
                                timeout: float, read_job_head: Callable[[], Awaitable[str]], submitted_at: float,
                                log, name: str) -> None:
    """Once the hub has routed the server (or `timeout`): the spawn's step times in one log line and
    the histogram, off the spawn's path (the job's output is read only now). Never raises: timing is
    a report and must not disturb the server."""
    try:
        deadline = time.monotonic() + timeout
        while not route_added.is_set() and time.monotonic() < deadline and same_job():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(route_added.wait(), 0.5)
        steps.mark_job_clock(await read_job_head(), submitted_at)
        total = steps.seconds.get("proxy route added") or steps.seconds.get("HTTP answered", 0.0)
        log.info("Spawn %s: ready in %.3f s: %s", name, total, steps.line())
        steps.observe()
    except Exception as e:  # noqa: BLE001
        log.info("Spawn %s: no step times: %s", name, e)
