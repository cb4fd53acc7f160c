"""Brute-force limiter for logins (pure: the clock and the store are injected; one per hub process).

Two counters, each over `window` seconds:

- a user name FROM one client address: after `max_failures` failures, further attempts for that
  name from that address are refused for `cooldown` seconds;
- one client address, whatever the names: after `max_address_failures` failures, every attempt
  from it is refused for the cool-down (password spraying).

There is deliberately no lock of a user name from every address: that is the lock an attacker
could place on anyone (admins included) with a handful of wrong passwords, repeatable forever.
With pairs, locking someone out costs the attacker more than the victim: an attacker's failures
lock the attacker's own address, the victim logs in from hers. Guessing one password from many
addresses is bounded by addresses x `max_failures` per window (and by the directory's own
password policy, the site's backstop). The address is the one the trusted proxy saw
(`client_address`), never a header the client chose.

Attempts refused during a cool-down do not count and do not extend it. A successful login clears
that name's failures from that address (not the address's). Memory is bounded (`max_tracked`).
With a `store`, the state is saved on every change and loaded at start: a hub restart forgets no
cool-down. Times are wall-clock (time.time) for that reason.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

USER, ADDRESS = "user", "address"

Key = tuple[str, str, str]  # (USER, name, address) or (ADDRESS, "", address)


class ThrottleStore(Protocol):
    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


@dataclass(frozen=True)
class Lockout:
    kind: str  # USER (a name from one address) or ADDRESS
    key: str  # the user name, or the client address
    until: float  # on the throttle's clock
    failures: int
    address: str = ""  # for USER: the address the failures came from

    def remaining(self, now: float) -> int:
        return max(0, math.ceil(self.until - now))

    def describe(self, now: float) -> str:
        who = f"user {self.key}" if self.kind == USER else f"address {self.key}"
        origin = f" from {self.address}" if self.kind == USER and self.address else ""
        return f"{who} is locked for {self.remaining(now)} s after {self.failures} failed logins{origin}"


class LoginThrottle:
    def __init__(
        self,
        max_failures: int,
        max_address_failures: int,
        window: float,
        cooldown: float,
        clock=time.time,
        max_tracked: int = 10000,
        store: ThrottleStore | None = None,
    ):
        if min(max_failures, max_address_failures) < 0 or window <= 0 or cooldown < 0:
            raise ValueError("throttle limits must be >= 0 and the window > 0")
        self.limits = {USER: max_failures, ADDRESS: max_address_failures}
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self.max_tracked = max_tracked
        self.store = store
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._locks: dict[Key, Lockout] = {}
        if store is not None:
            self._restore(store.load())

    @staticmethod
    def _keys(username: str | None, address: str | None):
        if username:
            yield USER, username, address or ""
        if address:
            yield ADDRESS, "", address

    def _expire(self, now: float) -> None:
        for key in [k for k, lock in self._locks.items() if lock.until <= now]:
            del self._locks[key]

    def lockout(self, username: str | None, address: str | None) -> Lockout | None:
        """The cool-down that refuses this attempt now, if any (the longest of name and address)."""
        now = self.clock()
        self._expire(now)
        locks = [self._locks[k] for k in self._keys(username, address) if k in self._locks]
        return max(locks, key=lambda lock: lock.until) if locks else None

    def record_failure(self, username: str | None, address: str | None) -> list[Lockout]:
        """Count one failed login; the lockouts it starts (empty when none)."""
        now = self.clock()
        started = []
        for key in self._keys(username, address):
            kind, name, origin = key
            limit = self.limits[kind]
            if not limit or key in self._locks:
                continue
            times = self._failures.pop(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= limit:
                lock = Lockout(kind, name if kind == USER else origin, now + self.cooldown, len(times),
                               origin if kind == USER else "")
                self._locks[key] = lock
                started.append(lock)
            else:
                self._failures[key] = times  # most recently failed last
                while len(self._failures) > self.max_tracked:
                    self._failures.popitem(last=False)
        self._save()
        return started

    def record_success(self, username: str, address: str | None = None) -> None:
        if self._failures.pop((USER, username, address or ""), None) is not None:
            self._save()

    def release(self, kind: str, key: str) -> bool:
        """End cool-downs early (an admin's decision): every one of the user name `key` (from any
        address), or of the address `key`; True when there was one."""
        def matches(k: Key) -> bool:
            return k[0] == kind and (k[1] == key if kind == USER else k[2] == key)

        for k in [k for k in self._failures if matches(k)]:
            del self._failures[k]
        released = [k for k in self._locks if matches(k)]
        for k in released:
            del self._locks[k]
        self._save()
        return bool(released)

    def snapshot(self) -> dict:
        """What admins see: current cool-downs and keys with recent failures (wall-clock times)."""
        now, wall = self.clock(), time.time()
        self._expire(now)
        locked = [
            {
                "kind": lock.kind,
                "key": lock.key,
                "address": lock.address if lock.kind == USER else lock.key,
                "failures": lock.failures,
                "remaining_seconds": lock.remaining(now),
                "locked_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + lock.until - now)),
            }
            for lock in sorted(self._locks.values(), key=lambda lock: lock.until)
        ]
        failing = [
            {"kind": kind, "key": name if kind == USER else origin, "address": origin,
             "recent_failures": sum(1 for t in times if t > now - self.window)}
            for (kind, name, origin), times in self._failures.items()
        ]
        return {
            "limits": {
                "max_failures_per_user_and_address": self.limits[USER],
                "max_failures_per_address": self.limits[ADDRESS],
                "window_seconds": self.window,
                "cooldown_seconds": self.cooldown,
            },
            "locked": locked,
            "failing": [f for f in failing if f["recent_failures"]],
        }

    # ---- persistence ---------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a restarted hub needs (JSON-ready)."""
        return {
            "failures": [[*key, list(times)] for key, times in self._failures.items()],
            "locks": [[*key, lock.until, lock.failures] for key, lock in self._locks.items()],
        }

    def _restore(self, state: dict | None) -> None:
        now = self.clock()
        for kind, name, origin, times in (state or {}).get("failures", []):
            kept = deque(t for t in times if t > now - self.window)
            if kind in self.limits and kept:
                self._failures[(kind, name, origin)] = kept
        for kind, name, origin, until, failures in (state or {}).get("locks", []):
            if kind in self.limits and until > now:
                self._locks[(kind, name, origin)] = Lockout(
                    kind, name if kind == USER else origin, until, failures, origin if kind == USER else "")

    def _save(self) -> None:
        if self.store is not None:
            self.store.save(self.state())
