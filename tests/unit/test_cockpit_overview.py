"""The cockpit's overview (issue 23): the hub's ONE view of SLURM (its documents, built by SlurmView itself
from real squeue/sinfo output) and the hub's servers, as node rows with GPUs by type and Carme job rows."""

from __future__ import annotations

from pathlib import Path

from carme_services.cockpit.overview import gpu_totals, overview
from carme_slurm.jobs import parse_squeue_json
from carme_slurm.nodes import parse_sinfo_json
from carme_slurm.view import SlurmView

from .samples import slurm_job
from .sessions_samples import NOW, server_model, user_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def documents(sinfo: str, extra_jobs=(), squeue: str = "squeue-running-pending.json") -> tuple[dict, dict]:
    """The view's /jobs and /nodes documents, as the hub serves them, from fixture snapshots."""
    view = SlurmView(job_name_prefix="carme-")
    view.jobs.set_items([*parse_squeue_json((FIXTURES / squeue).read_text()), *extra_jobs])
    view.nodes.set_items(parse_sinfo_json((FIXTURES / "slurm" / sinfo).read_text()))
    return view.jobs_document(), view.nodes_document()


PENDING = slurm_job("9", name="carme-alice-exp2", state="PENDING", reason="Resources", comment="carme:alice/exp2",
                    nodes="", batch_host="", submit_time=int(NOW) - 120, start_time=int(NOW) + 600, end_time=0,
                    account="carme-dev", gpus=2)


def test_nodes_show_gpus_by_type_and_a_drained_node_with_its_reason():
    jobs, nodes = documents("sinfo-24.05-v0.0.41-constructed.json")
    data = overview(jobs, nodes, [], NOW)
    rows = {n["name"]: n for n in data["nodes"]}
    assert rows["gpu01"]["gpus"] == [{"type": "a100", "total": 4, "allocated": 2, "free": 2, "unavailable": 0}]
    assert rows["gpu01"]["status"] == "up" and rows["gpu01"]["may_drain"] and not rows["gpu01"]["may_resume"]
    drained = rows["gpu04"]
    assert (drained["status"], drained["reason"], drained["gpus_free"]) == ("drained", "fan broken", 0)
    assert drained["gpus"][0]["unavailable"] == 4 and drained["may_resume"] and not drained["may_drain"]
    # the cluster's totals agree with the view's own (gpu_inventory)
    assert data["gpus"] == {"a100": {"total": 16, "allocated": 2, "free": 10, "unavailable": 4}}
    assert data["gpus"]["a100"] == nodes["gpus"]["a100"]


def test_carme_jobs_with_their_server_image_and_time_left_and_others_counted_apart():
    jobs, nodes = documents("sinfo-22.05-gpu-allocated.json", [PENDING])
    running = server_model(state={"job_id": "2"}, user_options={"image": "pytorch-gpu", "gpus": 1})
    pending = server_model(ready=False, pending="spawn", state={}, url="/user/alice/exp2/",
                           user_options={"image": "jax-gpu", "gpus": 2, "gpu_type": "a100"})
    users = [user_model({"": running, "exp2": pending})]
    now = 1795505453 + 100  # 100 s after job 2 started (the fixture's clock)
    data = overview(jobs, nodes, users, now, "/services/carme-quota/admin#override-{user}")
    by_id = {j["job_id"]: j for j in data["jobs"]}
    assert list(by_id) == ["2", "9"]  # running first, then pending; bob's jobs are not Carme's
    job = by_id["2"]
    assert (job["user"], job["server"], job["image"], job["gpus"], job["node"]) == ("alice", "", "pytorch-gpu", 1,
                                                                                      "carme-n1")
    assert job["age_s"] == 100 and job["time_left_s"] == 300 - 100 and job["end_time"] == 1795505753
    assert job["hub_server"] and job["server_ready"] and job["quota_page"] == "/services/carme-quota/admin#override-alice"
    waiting = by_id["9"]  # the hub has no job id for a spawn in progress: found by its user and server slug
    assert (waiting["server"], waiting["image"], waiting["gpu_type"], waiting["node"]) == ("exp2", "jax-gpu", "a100", "")
    assert waiting["pending"] and waiting["pending_reason"] == "Resources"
    assert "GPUs/CPUs/memory" in waiting["pending_words"] and waiting["expected_start"] == int(NOW) + 600
    assert waiting["time_left_s"] is None and waiting["age_s"] == int(now - waiting["submitted"])
    assert data["other"] == {"jobs": 3, "running": 1, "pending": 2, "gpus_running": 4, "gpus_pending": 8, "users": 1}
    assert data["counts"] == {"running": 1, "pending": 1, "gpus_running": 1}
    assert {n["name"]: n["gpus_free"] for n in data["nodes"]} == {"carme-n1": 2, "carme-n2": 4}


def test_a_carme_job_the_hub_does_not_know_still_shows_without_a_stop():
    jobs, nodes = documents("sinfo-22.05-idle.json")
    (job,) = overview(jobs, nodes, [], 1795505453)["jobs"]
    assert (job["job_id"], job["user"], job["hub_server"], job["image"]) == ("2", "alice", False, "")


def test_down_and_reserved_nodes_and_totals_over_rows():
    node = {"name": "n", "state": "down", "flags": ["NOT_RESPONDING"], "available": False, "reason": "Not responding",
            "gpus": [{"type": "", "total": 2, "allocated": 0, "free": 2}]}
    reserved = {**node, "name": "r", "state": "idle", "flags": ["RESERVED"], "reason": ""}
    data = overview({"jobs": []}, {"nodes": [node, reserved]}, [], NOW)
    rows = {n["name"]: n for n in data["nodes"]}
    assert (rows["n"]["status"], rows["n"]["may_resume"], rows["n"]["gpus"][0]["type"]) == ("down", True, "gpu")
    assert rows["r"]["status"] == "reserved" and rows["r"]["may_drain"]
    assert gpu_totals(data["nodes"]) == {"gpu": {"total": 4, "allocated": 0, "free": 0, "unavailable": 4}}
