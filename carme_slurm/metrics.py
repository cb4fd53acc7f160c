"""The hub's view of SLURM as Prometheus metrics, at /hub/metrics (JupyterHub's `read:metrics` scope).

A collector, not gauges set by the watch: every scrape reads the shared view as it is then, so a
scrape never runs a SLURM command and the numbers are never older than the last snapshot.

    carme_gpus{type, state}                 GPUs by type: allocated, free, unavailable (drained, down)
    carme_slurm_jobs{owner, state}          jobs in squeue: owner carme or other, state running/pending/other
    carme_slurm_nodes{state}                nodes by state, one word as sinfo's %T (idle, mixed, allocated, drained, down...)
    carme_reservation_gpus{reservation, use}  each active reservation's GPUs: booked, and in_use by its running jobs
    carme_slurm_snapshot_age_seconds{watch} seconds since the last good snapshot of each watch
    carme_slurm_failures{watch}             its consecutive failures now (0: SLURM answers)
    carme_slurm_calls{watch}                SLURM commands the watch ran (a counter)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .hostlist import expand_hostlist

GPU_STATES = ("allocated", "free", "unavailable")


class ViewCollector(Collector):
    """Reads `current()` (the shared SlurmView, or None before the hub started one) at each scrape."""

    def __init__(self, current: Callable[[], object | None]):
        self.current = current

    def collect(self) -> Iterator:
        view = self.current()
        gpus = GaugeMetricFamily("carme_gpus", "GPUs in SLURM by type and state (the hub's view)",
                                 labels=["type", "state"])
        jobs = GaugeMetricFamily("carme_slurm_jobs", "Jobs in squeue: Carme's and others', by state",
                                 labels=["owner", "state"])
        nodes = GaugeMetricFamily("carme_slurm_nodes", "Nodes by state", labels=["state"])
        reserved = GaugeMetricFamily("carme_reservation_gpus", "GPUs of each active reservation: booked, in use",
                                     labels=["reservation", "use"])
        age = GaugeMetricFamily("carme_slurm_snapshot_age_seconds", "Seconds since each watch's last good snapshot",
                                labels=["watch"])
        failures = GaugeMetricFamily("carme_slurm_failures", "Consecutive failed SLURM calls of each watch",
                                     labels=["watch"])
        calls = CounterMetricFamily("carme_slurm_calls", "SLURM commands each watch ran", labels=["watch"])
        if view is not None:
            for gpu_type, counts in sorted(view.nodes_document()["gpus"].items()):
                for state in GPU_STATES:
                    gpus.add_metric([gpu_type, state], counts[state])
            for (owner, state), n in sorted(job_counts(view).items()):
                jobs.add_metric([owner, state], n)
            for state, n in sorted(Counter(n.state for n in view.nodes.items.values()).items()):
                nodes.add_metric([state], n)
            for name, booked, in_use in reservation_use(view):
                reserved.add_metric([name, "booked"], booked)
                reserved.add_metric([name, "in_use"], in_use)
            now = time.time()
            for watch, reflector in (("jobs", view.jobs), ("nodes", view.nodes), ("reservations", view.reservations),
                                     *((("usage", view.usage), ("recent_jobs", view.recent_jobs))
                                       if view.accounting_interval > 0 else ())):
                if reflector.snapshot_started:
                    age.add_metric([watch], max(0.0, now - reflector.snapshot_started))
                failures.add_metric([watch], reflector.consecutive_failures)
                calls.add_metric([watch], reflector.calls)
        yield from (gpus, jobs, nodes, reserved, age, failures, calls)


def job_counts(view) -> Counter:
    counts: Counter = Counter()
    for job in view.jobs.items.values():
        state = "running" if job.is_running else "pending" if job.is_pending else "other"
        counts["carme" if view.is_carme_job(job) else "other", state] += 1
    return counts


def reservation_use(view) -> list[tuple[str, int, int]]:
    """(name, GPUs booked, GPUs its running jobs hold) of the reservations active now. Booked: its
    gres/gpu TRES where SLURM has one, else every GPU of its nodes (a whole-node reservation)."""
    held: Counter = Counter()
    for job in view.jobs.items.values():
        if job.reservation and job.is_running:
            held[job.reservation] += job.gpus
    rows = []
    for r in sorted(view.reservations.items.values(), key=lambda r: r.name):
        if not r.active:
            continue
        booked = r.tres.get("gres/gpu")
        if booked is None:
            nodes = [view.nodes.items.get(n) for n in expand_hostlist(r.nodes)] if r.nodes else []
            booked = sum(g.total for n in nodes if n is not None for g in n.gpus)
        rows.append((r.name, booked, held[r.name]))
    return rows


_installed: ViewCollector | None = None


def install(current: Callable[[], object | None]) -> ViewCollector:
    """Register the collector in the hub's default registry (once per process)."""
    global _installed
    if _installed is None:
        _installed = ViewCollector(current)
        REGISTRY.register(_installed)
    return _installed
