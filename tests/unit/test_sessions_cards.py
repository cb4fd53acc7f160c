"""Session cards (issue 21): the status badge of every phase, the words (pending reason, end reason,
exit code), which job a stopped server's card shows, and the card's facts and actions."""

from __future__ import annotations

import pytest

from carme_services.sessions.cards import (
    CANCELLED_OUTSIDE,
    STOPPED_FROM_THE_HUB,
    SessionServer,
    card,
    duration_words,
    exit_words,
    gpu_type,
    job_name,
    server_path,
    servers_of,
    session_job_id,
    spawn_url,
    status,
)
from carme_slurm.reasons import describe_end_state, describe_reason
from carme_spawner import progress

from .sessions_samples import NOW, PREFIX, accounted, job, server_model, user_model

SOON = 15 * 60
RUNNING = SessionServer("alice", "", ready=True, job_id="41", options={"image": "pytorch-gpu"}, url="/user/alice/")
SPAWNING = SessionServer("alice", "", pending="spawn", job_id="41")
STOPPED = SessionServer("alice", "", options={"image": "pytorch-gpu", "gpus": 1})
SAW_IT_END = SessionServer("alice", "", last_failure="SLURM job 41 ended: CANCELLED, exit code 0.")


@pytest.mark.parametrize("server, slurm, sacct, badge", [
    (SPAWNING, job(state="PENDING", reason="Resources", start_time=int(NOW) + 600), None, "queued"),
    (SPAWNING, job(), None, "starting"),
    (SPAWNING, None, None, "starting"),  # sbatch has not returned yet
    (RUNNING, job(), None, "running"),
    (RUNNING, job(end_time=int(NOW) + 10 * 60), None, "ending soon"),
    (RUNNING, None, None, "running"),  # the view has not listed it yet: doubt is not evidence
    (SessionServer("alice", "", ready=True, pending="stop", job_id="41"), job(), None, "stopping"),
    (STOPPED, job(state="RUNNING"), None, "stopping"),  # scancel sent, SLURM still lists it running
    (STOPPED, job(state="CANCELLED"), None, "completed"),  # stopped from the hub: Carme's scancel
    (SAW_IT_END, job(state="CANCELLED"), None, "cancelled"),  # the hub saw it end: cancelled outside the hub
    (SAW_IT_END, None, accounted(state="CANCELLED"), "cancelled"),  # squeue forgot it, sacct remembers
    (STOPPED, None, accounted(state="COMPLETED"), "completed"),
    (STOPPED, None, accounted(state="TIMEOUT"), "completed"),
    (SAW_IT_END, None, accounted(state="FAILED"), "failed"),
    (SAW_IT_END, job(state="NODE_FAIL"), None, "failed"),
    (SAW_IT_END, None, accounted(state="PREEMPTED"), "cancelled"),
    (STOPPED, None, accounted(state="RUNNING"), "stopping"),  # sacct not read since the end
    (STOPPED, None, None, "completed"),
    (SessionServer("alice", "", last_failure="Over your quota: GPU-hours ..."), None, None, "failed"),
    (RUNNING, job(state="TIMEOUT"), None, "completed"),  # ready, but SLURM ended it: the hub notices soon
])
def test_every_phase_has_its_badge(server, slurm, sacct, badge):
    assert status(server, slurm, sacct, NOW, SOON)[0] == badge


def test_the_words_say_why_in_plain_language():
    queued = status(SPAWNING, job(state="PENDING", reason="Priority"), None, NOW, SOON)[1]
    assert queued == describe_reason("Priority") == "other jobs with higher priority are ahead in the queue"
    assert describe_reason("QOSGrpCpuLimit") == "SLURM says: QOSGrpCpuLimit"
    assert progress.describe_reason("Resources") == describe_reason("Resources")  # the spawn says the same
    assert status(STOPPED, job(state="CANCELLED"), None, NOW, SOON)[1] == STOPPED_FROM_THE_HUB
    assert status(SAW_IT_END, job(state="CANCELLED"), None, NOW, SOON)[1] == CANCELLED_OUTSIDE
    assert status(STOPPED, None, accounted(state="TIMEOUT"), NOW, SOON)[1] == "it reached its time limit"
    assert status(STOPPED, job(state="TIMEOUT", time_limit_minutes=90), None, NOW, SOON)[1] == \
        "it reached its time limit (1 h 30 min)"
    assert describe_end_state("OUT_OF_MEMORY") == "it ran out of memory"
    assert describe_end_state("CANCELLED by 1000") == "the job was cancelled"
    assert status(RUNNING, job(end_time=int(NOW) + 300), None, NOW, SOON)[1] == "its time limit ends in 5 min"


def test_exit_codes_come_from_squeue_while_it_lists_the_job_then_from_sacct():
    assert exit_words(job(state="COMPLETED", exit_status=3), None) == "exit code 3"
    assert exit_words(job(state="CANCELLED", exit_signal=15), accounted(exit_code="0:0")) == "killed by signal 15"
    assert exit_words(None, accounted(exit_code="0:9")) == "killed by signal 9"
    assert exit_words(None, accounted(exit_code="2:0")) == "exit code 2"
    assert exit_words(None, accounted(exit_code="")) == "" and exit_words(None, None) == ""


def test_a_stopped_servers_card_shows_its_newest_job_remembered_or_named_after_it():
    assert session_job_id(RUNNING, ["7"], [], [], PREFIX) == "41"  # a running server's own job
    named = SessionServer("alice", "gpu box")
    assert job_name(PREFIX, "alice", "gpu box") == "carme-alice-gpu_box" and job_name(PREFIX, "alice", "") == "carme-alice"
    live = [job("50", name="carme-alice-gpu_box", state="CANCELLED"), job("60", name="carme-alice")]
    sacct = [accounted("48", name="carme-alice-gpu_box"), accounted("99", name="carme-alice-gpu_box", user="bob")]
    assert session_job_id(named, ["9"], live, sacct, PREFIX) == "50"  # job ids grow: the newest
    assert session_job_id(named, ["51"], live, sacct, PREFIX) == "51"
    assert session_job_id(named, [], [], [accounted("100", name="carme-alice-other")], PREFIX) == ""


def test_servers_come_from_the_hubs_model_default_first_and_need_the_state():
    model = user_model({"zeta": server_model(state={}), "": server_model(), "alpha": server_model(ready=False)})
    servers = servers_of(model)
    assert [s.name for s in servers] == ["", "alpha", "zeta"]
    default = servers[0]
    assert default.job_id == "41" and default.options["image"] == "pytorch-gpu" and default.started > 0
    with pytest.raises(RuntimeError, match="admin:server_state"):
        servers_of(user_model({"": {k: v for k, v in server_model().items() if k != "state"}}))
    with pytest.raises(RuntimeError, match="read:servers"):
        servers_of({"name": "alice"})


def test_a_running_card_has_image_gpus_node_project_time_left_and_its_actions():
    c = card(RUNNING, "41", job(), None, NOW, SOON, "/hub/", [{"job_id": "41", "outcome": "extended"}])
    assert (c["status"], c["image"], c["gpus"], c["gpu_type"], c["node"], c["project"], c["job_id"]) == \
        ("running", "pytorch-gpu", 1, "a100", "carme-n1", "carme-dev", "41")
    assert c["running"] == {"end_time": int(NOW) - 590 + 1800, "time_left_s": 1800 - 590, "started": int(NOW) - 590,
                            "warning": None}  # no warn_minutes given
    warned = card(RUNNING, "41", job(), None, NOW, SOON, "/hub/", [], [30, 5])["running"]["warning"]
    assert warned["minutes"] == 30 and warned["key"] == f"41:walltime:30:{int(NOW) - 590 + 1800}"
    assert c["actions"] == {"open": True, "stop": True, "extend": True, "relaunch": False, "edit": False}
    assert c["links"] == {"open": "/user/alice/", "edit": "/hub/spawn/alice"} and c["extensions"][0]["outcome"] == "extended"
    assert "queued" not in c and "ended" not in c


def test_a_queued_card_has_the_time_requested_the_reason_and_the_expected_start():
    c = card(SPAWNING, "41", job(state="PENDING", reason="Resources", start_time=int(NOW) + 900, gres_detail=(),
                                 time_limit_minutes=45), None, NOW, SOON, "/hub/")
    assert c["status"] == "queued" and c["queued"] == {
        "time_requested_minutes": 45, "reason": "waiting for GPUs/CPUs/memory to become free",
        "expected_start": int(NOW) + 900}
    assert c["actions"]["stop"] and not c["actions"]["extend"] and not c["actions"]["relaunch"]


def test_an_ended_card_says_why_and_offers_relaunch_and_edit():
    named = SessionServer("alice", "big one", options={"image": "tensorflow-gpu", "gpus": "2", "gpu_type": "a100"},
                          last_failure="SLURM job 48 ended: FAILED (NonZeroExitCode), exit code 1.")
    c = card(named, "48", None, accounted("48", state="FAILED", exit_code="1:0"), NOW, SOON, "/hub/")
    assert c["status"] == "failed" and c["ended"]["reason"] == "the job failed" and c["ended"]["exit"] == "exit code 1"
    assert c["ended"]["hub_said"].startswith("SLURM job 48 ended") and c["ended"]["at"] == NOW - 1790
    assert c["gpus"] == 2 and c["node"] == "carme-n2" and c["image"] == "tensorflow-gpu"  # sacct's figures
    assert c["actions"] == {"open": False, "stop": False, "extend": False, "relaunch": True, "edit": True}
    assert c["links"]["edit"] == "/hub/spawn/alice/big%20one" == spawn_url("/hub/", "alice", "big one")


def test_gpu_types_paths_and_durations():
    assert gpu_type(job(gres_detail=("gpu:1g.10gb:1(IDX:4),gpu:a100:1(IDX:0)",)), {}) == "1g.10gb,a100"
    assert gpu_type(job(gres_detail=("gpu:1(IDX:0)",)), {"gpu_type": "a100"}) == "a100"  # untyped: what was asked
    assert gpu_type(None, {}) == ""
    assert server_path("alice", "") == "users/alice/server" and server_path("a b", "x/y") == "users/a%20b/servers/x%2Fy"
    assert [duration_words(s) for s in (5, 300, 3600, 3900, 50 * 3600, 72 * 3600)] == \
        ["5 s", "5 min", "1 h", "1 h 5 min", "2 d 2 h", "3 d"]
