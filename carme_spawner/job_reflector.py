"""ONE shared watch of SLURM job state for every CarmeSpawner in the hub process.

Like kubespawner's reflector: a single task calls `squeue --json` once per interval for all
jobs, keeps the Carme jobs (by job-name prefix) in a dict, and wakes waiters on every fresh
snapshot. Spawners read the dict in `poll()` and wait on `wait_for_snapshot()` instead of
running their own squeue; N servers cost one squeue per interval, not N.

Doubt is not evidence: a failed squeue (non-zero exit, time-out, unparsable output,
slurmctld down) keeps the last good snapshot and is only counted, logged and backed off.
A job is "gone" only when a snapshot that *started after the job was submitted* lacks it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from . import slurm

Lister = Callable[[], Awaitable[list[slurm.SlurmJob]]]


@dataclass(frozen=True)
class JobView:
    """What the watch knows of one job."""

    job: slurm.SlurmJob | None  # None: not in the newest good snapshot
    snapshot_started: float  # time.time() when the newest good squeue call began (0: none yet)

    def known_gone(self, submitted_at: float) -> bool:
        """True only on evidence: a good snapshot, begun after submission, lacks the job.

        `submitted_at` is 0 when unknown (a job from before a hub restart): any good snapshot
        then counts.
        """
        return self.job is None and self.snapshot_started > submitted_at


class SlurmJobReflector:
    """Process-wide watch of the jobs whose names start with `name_prefix`."""

    _shared: SlurmJobReflector | None = None

    def __init__(
        self,
        interval: float = 5.0,
        name_prefix: str = "carme-",
        lister: Lister | None = None,
        max_backoff: float = 15.0,
        stale_warning_after: float = 60.0,
        log: logging.Logger | None = None,
    ):
        self.log = log or logging.getLogger("carme.job_reflector")
        self.interval = interval
        self.name_prefix = name_prefix
        self.max_backoff = max(max_backoff, interval)
        self.kick_min_gap = min(1.0, interval / 2)
        self.stale_warning_after = stale_warning_after
        self._lister = lister or slurm.squeue_all
        self.jobs: dict[str, slurm.SlurmJob] = {}
        self.snapshot_started = 0.0
        self.calls = 0
        self.consecutive_failures = 0
        self.failing_since: float | None = None
        self.last_error = ""
        self._fresh = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._warned = False
        self._node_addresses: dict[str, str] = {}

    # ---- the shared instance ----------------------------------------------------------------

    @classmethod
    def shared(cls, **settings) -> SlurmJobReflector:
        """The hub's one watch; the first caller's settings win (they all come from one config)."""
        if cls._shared is None or cls._shared._loop_closed():
            cls._shared = cls(**settings)
        cls._shared.ensure_started()
        return cls._shared

    @classmethod
    def current(cls) -> SlurmJobReflector | None:
        """The shared watch if one runs (without starting one)."""
        return cls._shared

    @classmethod
    def reset_shared(cls) -> None:
        """Stop and forget the shared watch (tests, and a hub that reloads its config)."""
        if cls._shared is not None:
            cls._shared.stop()
        cls._shared = None

    def _loop_closed(self) -> bool:
        return self._task is not None and self._task.get_loop().is_closed()

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="carme-squeue-watch")

    def stop(self) -> None:
        if self._task is not None and not self._task.get_loop().is_closed():
            self._task.cancel()
        self._task = None

    # ---- reading ------------------------------------------------------------------------------

    def view(self, job_id: str) -> JobView:
        return JobView(self.jobs.get(str(job_id)), self.snapshot_started)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.snapshot_started > 0

    def health(self) -> dict:
        """For the API status and logs: is SLURM answering, since when not, last error."""
        return {
            "slurm_answering": self.consecutive_failures == 0,
            "warning": self._stale_warning(),
            "last_snapshot": self.snapshot_started or None,
            "failing_since": self.failing_since,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "squeue_calls": self.calls,
        }

    async def wait_for_snapshot(self, newer_than: float, timeout: float | None = None, kick: bool = True) -> bool:
        """Wait until a good snapshot begun after `newer_than` (a time.time()) exists.

        With `kick`, asks the watch for an early call (served at most once per `kick_min_gap`,
        however many ask). Returns False on time-out (SLURM not answering), True otherwise.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.snapshot_started <= newer_than:
            if kick:
                self._kick.set()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._fresh.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def node_address(self, node: str) -> str:
        """The address of a SLURM node (its NodeAddr), from a cached `sinfo` (refreshed on a miss)."""
        if node not in self._node_addresses:
            try:
                self._node_addresses = await slurm.node_addresses()
            except slurm.SlurmCommandError as e:
                self.log.warning("cannot read node addresses, using the node name %s: %s", node, e)
        return self._node_addresses.get(node, node)

    # ---- the watch ----------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """One squeue call; True if it gave a good snapshot."""
        started = time.time()
        self.calls += 1
        try:
            jobs = await self._lister()
        except slurm.SlurmCommandError as e:
            self._record_failure(str(e))
            return False
        self.jobs = {j.job_id: j for j in jobs if j.name.startswith(self.name_prefix)}
        self.snapshot_started = started
        if self.consecutive_failures:
            self.log.warning(
                "SLURM answers again after %d failed squeue calls; %d Carme jobs known",
                self.consecutive_failures,
                len(self.jobs),
            )
        self.consecutive_failures = 0
        self.failing_since = None
        self.last_error = ""
        self._warned = False
        fresh, self._fresh = self._fresh, asyncio.Event()
        fresh.set()
        return True

    def _silent_since(self) -> float | None:
        """Since when SLURM has not answered: the last good call, else the first failed one."""
        if self.failing_since is None:
            return None
        return self.snapshot_started or self.failing_since

    def _stale_warning(self) -> str | None:
        since = self._silent_since()
        if since is None or time.time() - since < self.stale_warning_after:
            return None
        return (
            f"SLURM has not answered for {time.time() - since:.0f} s ({self.last_error}); "
            "Carme keeps every server as it was and drops none until SLURM answers again"
        )

    def _record_failure(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = time.time()
        self.log.info("squeue failed (%d in a row), keeping the last known state: %s", self.consecutive_failures, error)
        warning = self._stale_warning()
        if warning and not self._warned:
            self._warned = True
            self.log.warning(warning)

    def _delay(self) -> float:
        if not self.consecutive_failures:
            return self.interval
        delay = min(self.interval * 2 ** (self.consecutive_failures - 1), self.max_backoff)
        if not self._warned:  # try again when the warning falls due, so it is not late
            delay = min(delay, max(0.5, self._silent_since() + self.stale_warning_after - time.time()))
        return delay

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the watch for every user
                self.log.exception("unexpected error in the SLURM job watch")
                self._record_failure("internal error")
            self._kick.clear()
            try:
                # a fixed cadence: the call's own duration is part of the interval
                await asyncio.wait_for(self._kick.wait(), max(0.0, self._delay() - (time.monotonic() - began)))
                # a kick (a starting server waiting for news) is served at most once per
                # `kick_min_gap`, however many ask, so kicks cannot multiply squeue calls
                await asyncio.sleep(max(0.0, self.snapshot_started + self.kick_min_gap - time.time()))
            except asyncio.TimeoutError:
                pass
