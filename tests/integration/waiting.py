"""Waiting in tests: poll a predicate until it holds or time runs out (no bare sleeps)."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, interval: float = 0.25):
    """The first truthy value of predicate() within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
