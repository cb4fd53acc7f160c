"""A reflector: ONE task that lists something from SLURM once per interval and keeps the snapshot.

Like kubespawner's reflectors: a single task calls its lister (e.g. `squeue --json`) once per
interval, keeps the items in a dict by key, and wakes waiters on every fresh snapshot. Readers
take the dict and wait on `wait_for_snapshot()` instead of asking SLURM themselves; N readers
cost one call per interval, not N. `carme_slurm.view.SlurmView` holds one per kind (jobs,
nodes, reservations).

Doubt is not evidence: a failed call (non-zero exit, time-out, unparsable output, slurmctld
down) keeps the last good snapshot and is only counted, logged and backed off. A job is "gone"
only when a snapshot that *started after the job was submitted* lacks it (`JobView`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .commands import SlurmCommandError
from .jobs import SlurmJob

T = TypeVar("T")
Lister = Callable[[], Awaitable[list]]


@dataclass(frozen=True)
class JobView:
    """What the watch knows of one job."""

    job: SlurmJob | None  # None: not in the newest good snapshot
    snapshot_started: float  # time.time() when the newest good squeue call began (0: none yet)

    def known_gone(self, submitted_at: float) -> bool:
        """True only on evidence: a good snapshot, begun after submission, lacks the job.

        `submitted_at` is 0 when unknown (a job from before a hub restart): any good snapshot
        then counts.
        """
        return self.job is None and self.snapshot_started > submitted_at


class Reflector(Generic[T]):
    """The newest good snapshot of what `lister` returns, keyed by `key`, refreshed every `interval`."""

    def __init__(
        self,
        lister: Lister,
        key: Callable[[T], str],
        interval: float = 5.0,
        what: str = "squeue",
        max_backoff: float = 15.0,
        stale_warning_after: float = 60.0,
        log: logging.Logger | None = None,
        group: Callable[[T], str] | None = None,
    ):
        self.log = log or logging.getLogger("carme.slurm")
        self.what = what  # for logs: the command it runs
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self.kick_min_gap = min(1.0, interval / 2)
        self.stale_warning_after = stale_warning_after
        self._lister = lister
        self._key = key
        self.items: dict[str, T] = {}
        self._group = group
        self.grouped: dict[str, list[T]] = {}  # items by `group` (e.g. by user), rebuilt once per snapshot
        self.snapshot_started = 0.0
        self.calls = 0
        self.consecutive_failures = 0
        self.failing_since: float | None = None
        self.last_error = ""
        self._fresh = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._warned = False

    def loop_closed(self) -> bool:
        return self._task is not None and self._task.get_loop().is_closed()

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"carme-{self.what}-watch")

    def stop(self) -> None:
        if self._task is not None and not self._task.get_loop().is_closed():
            self._task.cancel()
        self._task = None

    # ---- reading ------------------------------------------------------------------------------

    def health(self) -> dict:
        """For the API status and logs: is SLURM answering, since when not, last error."""
        return {
            "slurm_answering": self.consecutive_failures == 0,
            "warning": self._stale_warning(),
            "last_snapshot": self.snapshot_started or None,
            "failing_since": self.failing_since,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "calls": self.calls,
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

    # ---- the watch ----------------------------------------------------------------------------

    def set_items(self, items) -> None:
        """Take `items` as the snapshot (and group them), so that readers look up, never scan."""
        self.items = {self._key(item): item for item in items}
        if self._group is not None:
            grouped: dict[str, list[T]] = {}
            for item in self.items.values():
                grouped.setdefault(self._group(item), []).append(item)
            self.grouped = grouped

    async def refresh(self) -> bool:
        """One call of the lister; True if it gave a good snapshot."""
        started = time.time()
        self.calls += 1
        try:
            items = await self._lister()
        except SlurmCommandError as e:
            self._record_failure(str(e))
            return False
        self.set_items(items)
        self.snapshot_started = started
        if self.consecutive_failures:
            self.log.warning(
                "SLURM answers again after %d failed %s calls; %d items known",
                self.consecutive_failures,
                self.what,
                len(self.items),
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
        self.log.info(
            "%s failed (%d in a row), keeping the last known state: %s", self.what, self.consecutive_failures, error
        )
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
                self.log.exception("unexpected error in the SLURM watch (%s)", self.what)
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
