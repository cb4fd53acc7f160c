"""Extend (issue 21): the request's checks (400 naming the field), Carme's admission (the user's
runtime and GPU-hours, a project's budget, the queue's most, the reservation's end: 403 naming the
limit), then SLURM's scontrol update decides (its refusal a 409 with its words); audited either way.
The service runs over a real SQLite store and a real quota store, the hub's view from documents and
scontrol recorded (no SLURM)."""

from __future__ import annotations

import time

import pytest
from traitlets.config import Config

from carme_quota.admission import Usage
from carme_quota.limits import Limits, ProjectTemplate
from carme_quota.store import QuotaStore
from carme_quota.store import database as quota_database
from carme_services.sessions import service as service_module
from carme_services.sessions.errors import InputError, SessionError
from carme_services.sessions.extend import current_limit, extension_refusal, parse_extend
from carme_services.sessions.service import SessionsService
from carme_slurm import SlurmCommandError

from .sessions_samples import NOW, job, server_model, user_model

FREE = Usage(servers=1, started_today=1)


def test_the_request_is_a_whole_number_of_minutes_and_nothing_else():
    assert parse_extend({"minutes": 5}, "alice", 480) == (5, "alice")
    assert parse_extend({"minutes": "30", "user": "bob"}, "admin", 480) == (30, "bob")  # a form's field
    for body, field in [({}, "minutes"), ({"minutes": 0}, "minutes"), ({"minutes": 481}, "minutes"),
                        ({"minutes": True}, "minutes"), ({"minutes": 1.5}, "minutes"), ({"minutes": "5m"}, "minutes"),
                        ({"minutes": 5, "hours": 1}, "hours"), ({"minutes": 5, "user": ""}, "user")]:
        with pytest.raises(InputError) as e:
            parse_extend(body, "alice", 480)
        assert e.value.field == field and str(e.value).startswith(f"{field}: ")


def test_the_limit_to_extend_from_is_ours_until_a_later_snapshot_shows_slurms():
    assert current_limit(30, 100.0, None) == 30
    assert current_limit(30, 100.0, (35, 101.0)) == 35  # the view has not seen our update yet
    assert current_limit(40, 102.0, (35, 101.0)) == 40  # it has (and SLURM's word decides)


@pytest.mark.parametrize("limits, usage, extra, kw, limit", [
    (Limits(max_runtime_minutes=60), FREE, 30, {}, None),  # 30 + 30 = 60: within
    (Limits(max_runtime_minutes=45), FREE, 30, {}, "max_runtime_minutes"),
    (Limits(gpu_hours=1), Usage(1, 1, gpu_minutes_used=20, gpu_minutes_running=20), 20, {}, None),  # 20 min left
    (Limits(gpu_hours=1), Usage(1, 1, gpu_minutes_used=30, gpu_minutes_running=20), 20, {}, "gpu_hours"),
    (Limits(), FREE, 20, {"template": ProjectTemplate(gpu_hours=2),
                          "project_usage": Usage(1, 1, gpu_minutes_used=110)}, "gpu_hours"),  # the project's budget
    (Limits(), FREE, 30, {"partition_max": 45}, "partition"),
    (Limits(), FREE, 30, {"reservation_end": int(NOW) - 590 + 40 * 60, "reservation": "carme-r3-alice"}, "reservation"),
    (Limits(), FREE, 30, {"reservation_end": int(NOW) - 590 + 60 * 60, "reservation": "carme-r3-alice"}, None),
])
def test_an_extension_is_admitted_like_a_spawn(limits, usage, extra, kw, limit):
    refused = extension_refusal(job(), 30, extra, limits, usage, **kw)
    assert (refused.limit if refused else None) == limit


def test_refusals_name_the_limit_in_words():
    refused = extension_refusal(job(), 30, 30, Limits(max_runtime_minutes=45), FREE)
    assert refused.to_dict()["label"] == "runtime per server" and "up to 45 min" in refused.message
    refused = extension_refusal(job(account="vision"), 30, 20, Limits(), FREE, ProjectTemplate(gpu_hours=2),
                                Usage(1, 1, gpu_minutes_used=110))
    assert refused.message.startswith("project vision's GPU-hours:")
    refused = extension_refusal(job(), 30, 30, Limits(), FREE, reservation_end=int(NOW) - 590 + 40 * 60,
                                reservation="carme-r3-alice")
    assert "reservation carme-r3-alice ends at" in refused.message and "+10 min at most" in refused.message
    assert extension_refusal(job(), 30, 30, Limits(), FREE, partition_max=45).to_dict()["label"] == "partition"


# ---- the service: admission, scontrol, audit -------------------------------------------------------


class FakeHub:
    def __init__(self):
        self.jobs, self.usage, self.reservations, self.answering = [job()], [], [], True

    async def slurm(self, kind):
        snapshot = {"slurm_answering": self.answering, "last_snapshot": time.time() - 1}  # begun before our update
        if kind == "jobs":
            return {"snapshot": snapshot, "job_name_prefix": "carme-", "jobs": [j.to_dict() for j in self.jobs]}
        if kind == "usage":
            return {"snapshot": snapshot, "usage": self.usage}
        if kind == "recent_jobs":
            return {"snapshot": snapshot, "jobs": []}
        return {"snapshot": snapshot, "reservations": self.reservations}


@pytest.fixture
def service(tmp_path, monkeypatch):
    quota_url = f"sqlite:///{tmp_path}/quota.sqlite"
    db = quota_database(quota_url)
    db.upgrade()
    config = Config({"SessionsService": {"db_url": f"sqlite:///{tmp_path}/sessions.sqlite",
                                         "partition_max_minutes": {"interactive": 480}},
                     "CarmeQuota": {"db_url": quota_url, "account": "carme-dev",
                                    "role_limits": {"user": {"max_runtime_minutes": 60, "gpu_hours": 10}}}})
    app = SessionsService(config=config)
    app.initialize([])
    app.hub = FakeHub()
    app.quota_store = QuotaStore(db)
    monkeypatch.setattr(app, "hub_client", lambda: app.hub)
    app.set, app.slurm_says = [], None

    async def set_time_limit(job_id, minutes, timeout=30):
        if app.slurm_says:
            raise SlurmCommandError(["scontrol"], app.slurm_says, 1)
        app.set.append((job_id, minutes))

    monkeypatch.setattr(service_module, "set_time_limit", set_time_limit)
    return app


async def test_an_admitted_extension_sets_slurms_time_limit_and_is_audited(service):
    answer = await service.extend("alice", user_model(), "", 5)
    assert service.set == [("41", 35)] and (answer["from_minutes"], answer["to_minutes"]) == (30, 35)
    assert answer["audit"]["outcome"] == "extended" and answer["audit"]["actor"] == "alice"
    again = await service.extend("alice", user_model(), "", 20)  # the view still says 30: ours counts
    assert service.set[-1] == ("41", 55) and again["from_minutes"] == 35
    (shown,) = (await service.sessions(user_model()))["sessions"]  # the card shows it before the view does
    assert shown["time_limit_minutes"] == 55 and shown["running"]["end_time"] == int(NOW) - 590 + 55 * 60  # ours
    audit = service.store.extensions("alice")
    assert [(e["outcome"], e["from_minutes"], e["to_minutes"]) for e in audit] == [("extended", 35, 55),
                                                                                  ("extended", 30, 35)]


async def test_beyond_the_max_runtime_carme_refuses_naming_the_limit_and_slurm_is_not_asked(service):
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 31)
    assert e.value.status == 403 and e.value.limit == "max_runtime_minutes"
    assert "runtime per server: up to 1 h" in e.value.message and service.set == []
    assert service.store.extensions("alice")[0]["outcome"] == "refused"


async def test_the_override_from_the_quota_store_counts_as_the_hub_reads_it(service):
    service.quota_store.set_override("alice", Limits(max_runtime_minutes=120), "admin")
    await service.extend("alice", user_model(), "", 60)
    assert service.set == [("41", 90)]


async def test_a_project_job_runs_under_the_projects_template_and_budget(service):
    service.quota_store.create_project("vision", ProjectTemplate(max_runtime_minutes=40, gpu_hours=1), ["carol"],
                                       "admin")
    request = service.quota_store.request_membership("vision", "alice")
    service.quota_store.decide(request.id, True, "carol")
    service.hub.jobs = [job(account="vision")]
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 15)  # 45 > the template's 40
    assert e.value.limit == "max_runtime_minutes"
    service.hub.usage = [{"account": "vision", "user": "", "gpu_minutes_used": 55, "gpu_minutes_running": 0,
                          "raw_usage": 0}]
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 10)
    assert e.value.limit == "gpu_hours" and "project vision's" in e.value.message


async def test_the_reservation_end_bounds_it(service):
    service.hub.jobs = [job(reservation="carme-r3-alice")]
    service.hub.reservations = [{"name": "carme-r3-alice", "end_time": int(NOW) - 590 + 40 * 60}]
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 15)
    assert e.value.status == 403 and e.value.limit == "reservation"
    await service.extend("alice", user_model(), "", 10)
    assert service.set == [("41", 40)]


async def test_slurms_refusal_is_a_409_with_its_words_and_audited(service):
    service.slurm_says = "exit 1: slurm_update error: Access/permission denied"
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 5)
    assert e.value.status == 409 and "Access/permission denied" in e.value.message
    assert service.store.extensions("alice")[0]["outcome"] == "failed"


async def test_nothing_is_extended_on_doubt_or_a_server_that_does_not_run(service):
    service.hub.answering = False
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 5)
    assert e.value.status == 503
    service.hub.answering = True
    service.hub.jobs = [job(state="PENDING")]
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "", 5)
    assert e.value.status == 409 and "PENDING" in e.value.message
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model({"": server_model(ready=False, state={})}), "", 5)
    assert e.value.status == 409 and "not running" in e.value.message
    with pytest.raises(SessionError) as e:
        await service.extend("alice", user_model(), "other", 5)
    assert e.value.status == 404
    assert service.set == []
