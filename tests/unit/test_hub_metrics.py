"""The hub's view of SLURM at /hub/metrics (carme_slurm.metrics), read back with prometheus_client's
own parser; and the quota refusals counter."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from carme_slurm import SlurmView
from carme_slurm.metrics import ViewCollector
from carme_slurm.nodes import parse_sinfo_json
from carme_slurm.reservations import SlurmReservation

from .samples import slurm_job

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"


def scrape(current) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(ViewCollector(current))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def a_view() -> SlurmView:
    view = SlurmView(job_name_prefix="carme-")
    nodes = parse_sinfo_json((FIXTURES / "sinfo-22.05-gpu-allocated.json").read_text())
    n2 = next(n for n in nodes if n.name == "carme-n2")
    nodes = [n for n in nodes if n.name != "carme-n2"] + [dataclasses.replace(n2, state="drained", flags=("DRAIN",))]
    view.nodes.items = {n.name: n for n in nodes}
    view.jobs.items = {j.job_id: j for j in [
        slurm_job("1", comment="carme:alice/"), slurm_job("2", name="carme-bob", comment="carme:bob/", state="PENDING"),
        slurm_job("3", name="train", user="dave"), slurm_job("4", name="carme-erin", comment="carme:erin/exp")]}
    view.reservations.items = {r.name: r for r in [
        SlurmReservation(name="carme-course", state="ACTIVE", start_time=0, end_time=2**31, nodes="carme-n[1-2]",
                         node_count=2, partition="", users=("alice",), accounts=(), flags=(), tres={"cpu": 16}),
        SlurmReservation(name="later", state="INACTIVE", start_time=0, end_time=2**31, nodes="carme-n1",
                         node_count=1, partition="", users=("bob",), accounts=(), flags=(), tres={"gres/gpu": 2})]}
    view.jobs.items["5"] = slurm_job("5", name="carme-alice", comment="carme:alice/course", gpus=2,
                                     reservation="carme-course")
    view.jobs.snapshot_started = time.time() - 4
    view.nodes.snapshot_started = time.time() - 20
    view.reservations.consecutive_failures = 3
    view.jobs.calls = 12
    return view


def test_the_gpus_jobs_and_nodes_of_the_view_are_metrics():
    samples = scrape(a_view)
    gpus = {labels: v for (name, labels), v in samples.items() if name == "carme_gpus"}
    assert gpus == {(("state", "allocated"), ("type", "gpu")): 2, (("state", "free"), ("type", "gpu")): 2,
                    (("state", "unavailable"), ("type", "gpu")): 4}  # carme-n2 drained: its 4 GPUs
    jobs = {dict(labels)["owner"] + "/" + dict(labels)["state"]: v
            for (name, labels), v in samples.items() if name == "carme_slurm_jobs"}
    assert jobs == {"carme/running": 3, "carme/pending": 1, "other/running": 1}
    assert samples["carme_slurm_nodes", (("state", "drained"),)] == 1
    assert samples["carme_slurm_nodes", (("state", "mixed"),)] == 1


def test_an_active_reservation_shows_its_gpus_booked_and_in_use():
    samples = scrape(a_view)
    booked = {dict(labels)["use"]: v for (name, labels), v in samples.items()
              if name == "carme_reservation_gpus" and dict(labels)["reservation"] == "carme-course"}
    assert booked == {"booked": 8, "in_use": 2}  # both nodes' GPUs (no gres/gpu TRES), alice's 2-GPU job
    assert not any(dict(labels).get("reservation") == "later" for (_, labels) in samples)  # not active


def test_the_watches_health_is_there_for_alerts():
    samples = scrape(a_view)
    assert 3 <= samples["carme_slurm_snapshot_age_seconds", (("watch", "jobs"),)] < 60
    assert samples["carme_slurm_snapshot_age_seconds", (("watch", "nodes"),)] >= 19
    assert ("carme_slurm_snapshot_age_seconds", (("watch", "reservations"),)) not in samples  # never answered
    assert samples["carme_slurm_failures", (("watch", "reservations"),)] == 3
    assert samples["carme_slurm_failures", (("watch", "jobs"),)] == 0
    assert samples["carme_slurm_calls_total", (("watch", "jobs"),)] == 12


def test_before_the_hub_has_a_view_the_families_are_empty():
    assert scrape(lambda: None) == {}




def test_the_grafana_dashboard_asks_only_for_metrics_carme_defines():
    import json
    import re

    repo = Path(__file__).resolve().parents[2]
    dashboard = json.loads((repo / "docs" / "grafana-carme-dashboard.json").read_text())
    source = "\n".join(p.read_text() for p in repo.glob("carme_*/**/*.py"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {re.sub(r"_(total|bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"\b(carme_[a-z_]+)", e)}
    assert names and all(f'"{n}"' in source for n in names), sorted(n for n in names if f'"{n}"' not in source)
    assert all(panel["targets"] and panel["gridPos"] for panel in dashboard["panels"])
