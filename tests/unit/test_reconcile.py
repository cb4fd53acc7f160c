"""The reconcile service's decisions (pure): which Carme jobs are orphans, which servers vanished."""

from __future__ import annotations

import asyncio
import json

import pytest

from traitlets import TraitError
from traitlets.config import Config

from carme_services import reconcile
from carme_services.reconcile import (
    HubServer,
    Orphan,
    ReconcileService,
    find_orphans,
    find_vanished,
    jobs_from_view,
    servers_from_users,
)
from carme_slurm import SlurmJob
from carme_slurm import jobs as slurm

NOW = 1_700_000_000.0
PREFIX = "carme-"


def job(job_id, name="carme-bob", comment="carme:bob/", state="RUNNING", age=600, user="bob",
        node="carme-n1"):
    return SlurmJob(
        job_id=str(job_id), name=name, user=user, state=state, reason="None", partition="interactive",
        nodes=node, batch_host=node if state == "RUNNING" else "", comment=comment,
        submit_time=int(NOW - age), start_time=int(NOW - age), end_time=0, time_limit_minutes=60,
        exit_status=None, exit_signal=None, output_path="",
    )


def server(user="bob", name="", ready=True, pending=None, job_id="", started=NOW - 3600):
    return HubServer(user, name, ready, pending, job_id, started)


def orphan_ids(jobs, servers, grace=120):
    return [o.job_id for o in find_orphans(jobs, servers, NOW, grace, PREFIX)]


def test_a_job_no_server_claims_is_an_orphan_with_its_details():
    assert find_orphans([job(7, age=600)], [], NOW, 120, PREFIX) == [
        Orphan(job_id="7", user="bob", server="", state="RUNNING", node="carme-n1", age=600,
               action="reported")
    ]


def test_claimed_by_a_ready_server_through_its_job_id():
    assert orphan_ids([job(7)], [server(job_id="7")]) == []
    # a ready server claims only its own job: a second job with the same comment is an orphan
    assert orphan_ids([job(7), job(8)], [server(job_id="7")]) == ["8"]


def test_claimed_by_a_pending_spawn_through_its_comment():
    # the spawn's job id reaches the hub state only once sbatch returned: the comment claims it
    assert orphan_ids([job(7)], [server(ready=False, pending="spawn")]) == []
    # ...but only while the server is pending, and only for that user and server
    assert orphan_ids([job(7)], [server(ready=False, pending=None)]) == ["7"]
    assert orphan_ids([job(7, comment="carme:alice/")], [server(ready=False, pending="spawn")]) == ["7"]
    assert orphan_ids([job(7, comment="carme:bob/gpu")], [server(ready=False, pending="spawn")]) == ["7"]


def test_a_pending_server_that_knows_its_job_claims_only_that_job():
    jobs = [job(7), job(8)]
    assert orphan_ids(jobs, [server(ready=False, pending="spawn", job_id="8")]) == ["7"]
    assert orphan_ids(jobs, [server(ready=False, pending="stop", job_id="7")]) == ["8"]


def test_a_stopped_server_claims_nothing():
    assert orphan_ids([job(7)], [server(ready=False, pending=None, job_id="7")]) == ["7"]


def test_too_young_jobs_are_never_orphans():
    assert orphan_ids([job(7, age=60)], [], grace=120) == []
    assert orphan_ids([job(7, age=121)], [], grace=120) == ["7"]
    # grace 0 still spares a job submitted in the same second as (or after) the hub was read
    assert orphan_ids([job(7, age=0)], [], grace=0) == []
    assert orphan_ids([job(7, age=-5)], [], grace=0) == []
    assert orphan_ids([job(7, age=2)], [], grace=0) == ["7"]


@pytest.mark.parametrize("state", ["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "NEW_STATE"])
def test_ended_or_unknown_states_are_not_orphans(state):
    assert orphan_ids([job(7, state=state)], []) == []


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD"])
def test_active_states_can_be_orphans(state):
    assert orphan_ids([job(7, state=state)], []) == ["7"]


def test_jobs_without_the_prefix_are_not_carmes():
    jobs = [job(7, name="bobs-own-job"), job(8, name="xcarme-bob"), job(9, name="Carme-bob")]
    assert orphan_ids(jobs, []) == []
    # a test hub's prefix: only its own jobs
    found = find_orphans([job(7, name="carme-rec-bob"), job(8)], [], NOW, 0, "carme-rec-")
    assert [o.job_id for o in found] == ["7"]


def test_named_servers():
    jobs = [job(7, name="carme-bob-gpu", comment="carme:bob/gpu"),
            job(8, name="carme-bob-my_nb", comment="carme:bob/my_nb")]
    assert orphan_ids(jobs, [server(name="gpu", job_id="7")]) == ["8"]
    # comments carry the server's slug (the spawner's rule): "my nb" is written my_nb
    assert orphan_ids(jobs, [server(name="my nb", ready=False, pending="spawn")]) == ["7"]
    orphan = find_orphans(jobs, [], NOW, 0, PREFIX)[1]
    assert (orphan.user, orphan.server) == ("bob", "my_nb")


def test_a_job_without_a_carme_comment_is_named_by_its_slurm_user():
    orphan, = find_orphans([job(7, comment="", user="carol", state="PENDING", node="")], [], NOW, 0, PREFIX)
    assert (orphan.user, orphan.server, orphan.node) == ("carol", None, "-")


def test_parse_comment():
    parse_comment = slurm.parse_job_comment
    assert slurm.job_comment("bob", "my nb") == "carme:bob/my_nb"
    assert parse_comment("carme:bob/") == ("bob", "")
    assert parse_comment("carme:bob/gpu") == ("bob", "gpu")
    assert parse_comment("carme:/gpu") is None
    assert parse_comment("carme:bob") is None
    assert parse_comment("something else") is None


def test_vanished_servers_are_ready_servers_whose_job_is_not_active():
    jobs = [job(7), job(8, state="CANCELLED")]
    servers = [
        server("alice", job_id="7"),  # alive
        server("bob", job_id="8"),  # ended
        server("carol", job_id="9"),  # unknown to SLURM
        server("dave", ready=False, pending="spawn", job_id="10"),  # starting: not ready yet
    ]
    assert find_vanished(jobs, servers, NOW) == [
        {"user": "bob", "server": "", "job_id": "8"},
        {"user": "carol", "server": "", "job_id": "9"},
    ]


def test_a_snapshot_older_than_the_server_cannot_tell_that_its_job_vanished():
    assert find_vanished([], [server("carol", job_id="9", started=NOW)], NOW - 1) == []
    assert find_vanished([], [server("carol", job_id="9", started=NOW)], NOW + 1) != []


def test_servers_from_the_hub_user_models():
    users = [
        {"name": "bob", "servers": {"": {"ready": True, "pending": None, "state": {"job_id": "7"},
                                         "started": "2023-11-14T22:13:20.000000Z"},
                                    "gpu": {"ready": False, "pending": "spawn", "state": {}}}},
        {"name": "carol", "servers": {}},
    ]
    assert servers_from_users(users) == [
        server("bob", "", True, None, "7", started=1_700_000_000.0),
        server("bob", "gpu", False, "spawn", "", started=0.0),
    ]


def test_without_server_state_nothing_is_judged():
    # a token without admin:server_state would make every job look unclaimed: refuse
    with pytest.raises(RuntimeError, match="admin:server_state"):
        servers_from_users([{"name": "bob", "servers": {"": {"ready": True, "pending": None}}}])
    with pytest.raises(RuntimeError, match="read:servers"):
        servers_from_users([{"name": "bob"}])


def view_document(jobs, answering=True, snapshot=NOW):
    return {"snapshot": {"slurm_answering": answering, "last_snapshot": snapshot if answering else None,
                         "last_error": "" if answering else "squeue: timed out"},
            "job_name_prefix": PREFIX, "jobs": [j.to_dict() for j in jobs]}


class FakeReconciler(ReconcileService):
    """The service with the hub's two answers (servers, the SLURM view) made up."""

    def __init__(self, servers, jobs=(), policy="cancel", hub_error=None, view=None):
        super().__init__(config=Config({"ReconcileService": {"policy": policy, "grace": 0}}))
        self.initialize([])
        self._servers, self._hub_error = servers, hub_error
        self._view = view or view_document(list(jobs))
        self.view_reads = 0

    async def hub_servers(self):
        if self._hub_error:
            raise self._hub_error
        return self._servers

    async def view_jobs(self):
        self.view_reads += 1
        return jobs_from_view(self._view)


def test_one_pass_cancels_orphans_only(monkeypatch):
    cancelled = []

    async def scancel(job_id, timeout=30):
        cancelled.append(job_id)

    monkeypatch.setattr(reconcile, "scancel", scancel)
    r = FakeReconciler([server("alice", job_id="8")],
                       [job(7), job(8, name="carme-alice", comment="carme:alice/", user="alice")])
    result = asyncio.run(r.run_pass())
    assert r.view_reads == 1 and cancelled == ["7"]
    assert [(o["job_id"], o["action"]) for o in result["orphans"]] == [("7", "cancelled")]
    assert result["vanished_servers"] == [] and result["error"] is None
    json.dumps(result)  # served as JSON as is


def test_a_failed_hub_read_judges_nothing(monkeypatch):
    async def must_not_run(*args, **kwargs):
        raise AssertionError("nothing may be cancelled without the hub's answer")

    monkeypatch.setattr(reconcile, "scancel", must_not_run)
    result = asyncio.run(FakeReconciler([], hub_error=OSError("connection refused")).run_pass())
    assert result["orphans"] == [] and "connection refused" in result["error"]


def test_a_view_slurm_does_not_answer_judges_nothing(monkeypatch):
    async def must_not_run(*args, **kwargs):
        raise AssertionError("nothing may be cancelled on a stale view")

    monkeypatch.setattr(reconcile, "scancel", must_not_run)
    r = FakeReconciler([], view=view_document([job(7)], answering=False))
    result = asyncio.run(r.run_pass())
    assert result["orphans"] == [] and "not fresh" in result["error"] and "timed out" in result["error"]


def test_adopt_is_refused_with_a_clear_message():
    with pytest.raises(TraitError, match="adopt is not supported.*use report and start a new server"):
        ReconcileService(config=Config({"ReconcileService": {"policy": "adopt"}})).policy
    with pytest.raises(TraitError):
        ReconcileService(config=Config({"ReconcileService": {"policy": "delete"}})).policy
    app = ReconcileService()
    app.initialize([])
    assert (app.policy, app.interval, app.grace, app.once) == ("report", 300, 120, False)
    app.initialize(["--policy=cancel", "--once"])
    assert (app.policy, app.once) == ("cancel", True)
