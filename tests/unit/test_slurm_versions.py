"""Carme's SLURM parsers on the outputs of every SLURM release sites run (23.02 to 25.05).

The fixtures (tests/fixtures/slurm/, sources in its README.md) are real outputs where SchedMD
published one, else built from that release's own field lists (`*-from-schema.json`, made by
make_from_schema.py from the release's rest_api.shtml and data_parser parsers.c). Every release's
documents describe the same cluster, so the same expectations hold for each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from carme_slurm.accounting import SACCT_FIELDS, SSHARE_FIELDS, parse_sacct, parse_sacct_json
from carme_slurm.jobs import parse_squeue_json
from carme_slurm.nodes import parse_sinfo_json
from carme_slurm.reasons import PENDING_REASONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = {"23.02": "v0.0.39", "23.11": "v0.0.40", "24.05": "v0.0.41", "24.11": "v0.0.42", "25.05": "v0.0.43"}
T0 = 1764748800


def fixture(kind: str, release: str, suffix: str = "-from-schema.json") -> str:
    name = f"{kind}-{release}-{RELEASES[release]}{suffix}" if suffix.endswith(".json") else f"{kind}-{release}{suffix}"
    return (FIXTURES / name).read_text()


versions = pytest.mark.parametrize("release", list(RELEASES))


# ---- squeue --json --------------------------------------------------------------------------------


@versions
def test_squeue_running_job(release):
    jobs = {j.job_id: j for j in parse_squeue_json(fixture("squeue", release))}
    assert set(jobs) == {"4242", "4243", "4240", "4239"}
    job = jobs["4242"]
    assert (job.user, job.account, job.name, job.partition) == ("alice", "exp1", "carme-alice", "interactive")
    assert (job.state, job.is_running, job.reason) == ("RUNNING", True, "None")
    assert (job.nodes, job.batch_host) == ("gpu01", "gpu01")
    assert job.gpus == 2  # allocated: tres_alloc_str gres/gpu=2
    assert job.time_limit_minutes == 480
    assert (job.submit_time, job.start_time, job.end_time) == (T0, T0 + 30, T0 + 30 + 480 * 60)
    assert job.comment == "carme:alice/"
    assert job.gres_detail == ("gpu:a100:2(IDX:0-1)",)
    assert job.output_path == "/home/alice/.carme/slurm-4242.out"
    assert (job.exit_status, job.exit_signal) == (0, None)


@versions
def test_squeue_pending_job(release):
    job = {j.job_id: j for j in parse_squeue_json(fixture("squeue", release))}["4243"]
    assert (job.state, job.is_pending, job.reason) == ("PENDING", True, "Resources")
    assert (job.nodes, job.batch_host, job.gres_detail) == ("", "", ())
    assert job.gpus == 1  # asked for: tres_per_node gres/gpu:1
    assert (job.time_limit_minutes, job.start_time) == (60, T0 + 3600)
    assert job.reservation == "carme-7-bob"
    assert job.comment == "carme:bob/gpu"


@versions
def test_squeue_completing_job_is_not_over(release):
    """23.02 prints "COMPLETING"; 23.11+ print ["COMPLETED", "COMPLETING"]: both still hold the node."""
    job = {j.job_id: j for j in parse_squeue_json(fixture("squeue", release))}["4240"]
    assert job.state == "COMPLETING"
    assert job.is_active and not job.is_terminal
    assert job.time_limit_minutes is None  # UNLIMITED: {"set": false, "infinite": true}
    assert job.gpus == 4 and job.gres_detail == ("gpu:a100:4(IDX:0-3)",)
    assert job.user == "carol" and job.comment == ""


@versions
def test_squeue_cancelled_job_signal(release):
    job = {j.job_id: j for j in parse_squeue_json(fixture("squeue", release))}["4239"]
    assert job.state == "CANCELLED" and job.is_terminal
    assert (job.exit_status, job.exit_signal) == (None, 15)


def test_job_state_flags_follow_job_state_string():
    def state(words):
        doc = {"jobs": [{"job_id": 1, "job_state": words}], "errors": []}
        return parse_squeue_json(json.dumps(doc))[0].state

    assert state(["RUNNING", "CONFIGURING"]) == "CONFIGURING"
    assert state(["PENDING", "REQUEUED"]) == "REQUEUED"
    assert state(["RUNNING"]) == "RUNNING"
    assert state([]) == "UNKNOWN"
    assert state("COMPLETING") == "COMPLETING"  # 22.05, 23.02


@versions
def test_squeue_errors_raise(release):
    doc = json.loads(fixture("squeue", release))
    doc["errors"] = [{"description": "Unable to contact slurm controller", "error_number": 1007}]
    with pytest.raises(ValueError, match="errors"):
        parse_squeue_json(json.dumps(doc))


# ---- sinfo --json and scontrol show node --json ---------------------------------------------------


def check_cluster_nodes(nodes):
    by = {n.name: n for n in nodes}
    assert list(by) == ["gpu01", "gpu02", "gpu03", "gpu05", "gpu04"] or set(by) == {"gpu01", "gpu02", "gpu03", "gpu04", "gpu05"}
    assert {n: by[n].address for n in by} == {f"gpu0{i}": f"10.0.0.{i}" for i in range(1, 6)}
    assert [(g.type, g.total, g.allocated) for g in by["gpu01"].gpus] == [("a100", 4, 2)]
    assert (by["gpu01"].state, by["gpu01"].available, by["gpu01"].gpus_free) == ("mixed", True, 2)
    assert by["gpu01"].partitions == ("interactive",)
    assert (by["gpu02"].state, by["gpu02"].flags) == ("completing", ("COMPLETING",))
    assert by["gpu02"].partitions == ("interactive", "batch")
    assert (by["gpu02"].gpus_allocated, by["gpu02"].gpus_free) == (4, 0)
    for name in ("gpu03", "gpu05"):
        assert (by[name].state, by[name].gpus_total, by[name].gpus_free) == ("idle", 4, 4)
        assert (by[name].cpus, by[name].memory_mb, by[name].tmp_disk_mb) == (32, 257000, 800000)
    assert by["gpu03"].partitions == ("interactive", "batch")
    drained = by["gpu04"]
    assert (drained.state, drained.flags, drained.available) == ("drained", ("DRAIN",), False)
    assert drained.reason == "fan broken" and drained.gpus_free == 0
    assert by["gpu01"].alloc_cpus == 4


@versions
def test_sinfo(release):
    check_cluster_nodes(parse_sinfo_json(fixture("sinfo", release)))


@pytest.mark.parametrize("release", ["23.11", "24.05", "25.05"])
def test_scontrol_show_node_from_schema(release):
    nodes = parse_sinfo_json(fixture("scontrol-show-node", release))
    check_cluster_nodes(nodes)
    by = {n.name: n for n in nodes}
    assert by["gpu02"].alloc_memory_mb == 32768


def test_scontrol_show_node_real_examples():
    node = parse_sinfo_json((FIXTURES / "scontrol-show-node-23.02-v0.0.39.json").read_text())[0]
    assert (node.name, node.address, node.state, node.partitions) == ("node01", "kitt", "idle", ("debug",))
    assert [(g.type, g.total, g.allocated) for g in node.gpus] == [("tesla", 4, 0)]
    node = parse_sinfo_json((FIXTURES / "scontrol-show-node-24.11-v0.0.42.json").read_text())[0]
    assert (node.name, node.address, node.state, node.cpus) == ("host1", "localhost", "idle", 32)
    assert [(g.type, g.total, g.allocated) for g in node.gpus] == [("fake1", 1, 0), ("fake2", 1, 0)]


# ---- sacct: the text Carme runs, and --json ---------------------------------------------------------


def check_accounted(rows):
    by = {r.job_id: r for r in rows}
    assert list(by) == ["4230", "4239", "4242", "4243"]
    done = by["4230"]
    assert (done.user, done.account, done.name, done.state) == ("alice", "exp1", "carme-alice", "COMPLETED")
    assert (done.gpus, done.elapsed_s, done.gpu_hours) == (2.0, 3600, 2.0)
    assert done.nodes == "gpu01" and done.exit_code == "0:0"
    cancelled = by["4239"]
    assert (cancelled.state, cancelled.gpus, cancelled.exit_code) == ("CANCELLED", 1.0, "0:15")
    running = by["4242"]
    assert (running.state, running.gpus, running.elapsed_s, running.ended) == ("RUNNING", 2.0, 1800, None)
    assert running.started is not None
    pending = by["4243"]
    assert (pending.state, pending.gpus, pending.started, pending.gpu_hours) == ("PENDING", 0.0, None, 0.0)


@versions
def test_sacct_text(release):
    check_accounted(parse_sacct(fixture("sacct", release, "-from-source.txt")))


@versions
def test_sacct_json(release):
    rows = parse_sacct_json(fixture("sacct", release))
    check_accounted(rows)
    by = {r.job_id: r for r in rows}
    assert by["4242"].started.timestamp() == T0 + 30
    assert by["4230"].submitted.timestamp() == T0 - 86400


# ---- what Carme reads as text: columns, reasons, error messages --------------------------------------


def texts(release) -> dict:
    return json.loads((FIXTURES / f"texts-{release}-from-source.json").read_text())


@versions
def test_sacct_and_sshare_columns_exist(release):
    t = texts(release)
    assert set(SACCT_FIELDS) <= set(t["sacct_fields"])
    assert set(SSHARE_FIELDS) <= set(t["sshare_fields"])


@versions
def test_pending_reasons_carme_explains_exist(release):
    assert set(PENDING_REASONS) <= set(texts(release)["pending_reasons"])


@versions
def test_error_texts_carme_matches(release):
    errors = texts(release)["errors"]
    # carme_services.reservations: a delete of a reservation already gone says "invalid"
    assert "invalid" in errors["ESLURM_RESERVATION_INVALID"].lower()
    # carme_slurm.reservation_argv's doc: nodes held past the start
    assert errors["ESLURM_NODES_BUSY"] == "Requested nodes are busy"
    assert errors["ESLURM_INVALID_JOB_ID"] == "Invalid job id specified"


#: the line `sbatch --test-only` prints, 23.02 to 24.11 and 25.05 (" on cluster NAME a using ...")
TEST_ONLY = re.compile(r"Job \d+ to start at (\S+?)(?: on cluster \S+)?(?: a)? using (\d+) processors "
                       r"on nodes (\S+) in partition (\S+)")


@versions
def test_sbatch_test_only_line(release):
    (fmt,) = texts(release)["sbatch_test_only"]
    line = fmt.replace("%u", "4244", 1).replace("%s", "2025-12-03T09:00:00", 1)
    if "%s%s" in line:  # 25.05: the cluster name (when the controller names one), then " a"
        line = line.replace("%s%s", " on cluster carme", 1)
    line = line.replace("%u", "4", 1).replace("%s", "gpu01", 1).replace("%s", "interactive", 1)
    assert TEST_ONLY.search("sbatch: " + line).groups() == ("2025-12-03T09:00:00", "4", "gpu01", "interactive")


def test_every_fixture_has_its_source():
    readme = (FIXTURES / "README.md").read_text()
    missing = [p.name for p in FIXTURES.iterdir() if p.suffix in (".json", ".txt") and f"`{p.name}`" not in readme]
    assert not missing, f"fixtures without a source in tests/fixtures/slurm/README.md: {missing}"


@pytest.mark.parametrize("name", ["scontrol-show-reservation-23.02-from-source.txt",
                                  "scontrol-show-reservation-24.05-from-source.txt"])
def test_reservation_text_of_newer_releases(name):
    from carme_slurm.reservations import parse_reservations_text
    from datetime import timezone

    first, maint = parse_reservations_text((FIXTURES / name).read_text(), tz=timezone.utc)
    assert (first.name, first.users, first.nodes, first.node_count) == ("fixture-res", ("alice", "bob"), "carme-n2", 1)
    assert first.tres == {"cpu": 8} and first.flags == ("IGNORE_JOBS", "SPEC_NODES")
    assert (maint.name, maint.users, maint.admits("alice"), maint.admits("bob")) == ("fixture-maint", ("-alice",), False, True)
    assert maint.end_time - maint.start_time == 86400
