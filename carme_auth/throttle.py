"""Brute-force limiter for logins (pure: the clock is injected; one instance per hub process).

After `max_failures` failed logins for one user name, or `max_address_failures` from one client
address, within `window` seconds, every further attempt for that user / from that address is
refused for `cooldown` seconds, without asking the directory. Attempts refused during a
cool-down do not count and do not extend it. A successful login clears its user's failures
(not its address's). Memory is bounded: at most `max_tracked` keys are remembered.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

USER, ADDRESS = "user", "address"


@dataclass(frozen=True)
class Lockout:
    kind: str  # USER or ADDRESS
    key: str  # the user name or the client address
    until: float  # on the throttle's clock
    failures: int

    def remaining(self, now: float) -> int:
        return max(0, math.ceil(self.until - now))

    def describe(self, now: float) -> str:
        who = f"user {self.key}" if self.kind == USER else f"address {self.key}"
        return f"{who} is locked for {self.remaining(now)} s after {self.failures} failed logins"


class LoginThrottle:
    def __init__(
        self,
        max_failures: int,
        max_address_failures: int,
        window: float,
        cooldown: float,
        clock=time.monotonic,
        max_tracked: int = 10000,
    ):
        if min(max_failures, max_address_failures) < 0 or window <= 0 or cooldown < 0:
            raise ValueError("throttle limits must be >= 0 and the window > 0")
        self.limits = {USER: max_failures, ADDRESS: max_address_failures}
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._locks: dict[tuple[str, str], Lockout] = {}

    def _keys(self, username: str | None, address: str | None):
        if username:
            yield USER, username
        if address:
            yield ADDRESS, address

    def _expire(self, now: float) -> None:
        for key in [k for k, lock in self._locks.items() if lock.until <= now]:
            del self._locks[key]

    def lockout(self, username: str | None, address: str | None) -> Lockout | None:
        """The cool-down that refuses this attempt now, if any (the longest of user and address)."""
        now = self.clock()
        self._expire(now)
        locks = [self._locks[k] for k in self._keys(username, address) if k in self._locks]
        return max(locks, key=lambda lock: lock.until) if locks else None

    def record_failure(self, username: str | None, address: str | None) -> list[Lockout]:
        """Count one failed login; the lockouts it starts (empty when none)."""
        now = self.clock()
        started = []
        for kind, key in self._keys(username, address):
            limit = self.limits[kind]
            if not limit or (kind, key) in self._locks:
                continue
            times = self._failures.pop((kind, key), deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= limit:
                lock = Lockout(kind, key, now + self.cooldown, len(times))
                self._locks[(kind, key)] = lock
                started.append(lock)
            else:
                self._failures[(kind, key)] = times  # most recently failed last
                while len(self._failures) > self.max_tracked:
                    self._failures.popitem(last=False)
        return started

    def record_success(self, username: str) -> None:
        self._failures.pop((USER, username), None)

    def release(self, kind: str, key: str) -> bool:
        """End a cool-down early (an admin's decision); True when there was one."""
        self._failures.pop((kind, key), None)
        return self._locks.pop((kind, key), None) is not None

    def snapshot(self) -> dict:
        """What admins see: current cool-downs and keys with recent failures (wall-clock times)."""
        now, wall = self.clock(), time.time()
        self._expire(now)
        locked = [
            {
                "kind": lock.kind,
                "key": lock.key,
                "failures": lock.failures,
                "remaining_seconds": lock.remaining(now),
                "locked_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + lock.until - now)),
            }
            for lock in sorted(self._locks.values(), key=lambda lock: lock.until)
        ]
        failing = [
            {"kind": kind, "key": key, "recent_failures": sum(1 for t in times if t > now - self.window)}
            for (kind, key), times in self._failures.items()
        ]
        return {
            "limits": {
                "max_failures_per_user": self.limits[USER],
                "max_failures_per_address": self.limits[ADDRESS],
                "window_seconds": self.window,
                "cooldown_seconds": self.cooldown,
            },
            "locked": locked,
            "failing": [f for f in failing if f["recent_failures"]],
        }
