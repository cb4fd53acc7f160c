"""The suite's order: pure unit tests first, then integration and browser tests, and the fault
tests (marked `faults`: they stop slurmctld and break squeue on purpose) last, in one place, so
nothing else runs against a controller that is coming back."""

from __future__ import annotations

ORDER = ("unit", "integration", "browser")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> tuple[int, int]:
        faults = item.get_closest_marker("faults") is not None
        parts = item.nodeid.split("/")
        kind = parts[1] if len(parts) > 1 and parts[0] == "tests" else ""
        return (1 if faults else 0, ORDER.index(kind) if kind in ORDER else len(ORDER))

    items.sort(key=rank)  # stable: the order within each group stays as collected
