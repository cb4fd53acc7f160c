"""The SLURM view's reflectors: one call per interval, doubt is not evidence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from carme_slurm import JobView, Reflector, SlurmCommandError, SlurmJob, SlurmView
from carme_slurm import jobs as slurm

from .samples import slurm_job

FIXTURES = Path(__file__).parent.parent / "fixtures"


job = slurm_job


def SlurmJobReflector(lister, **settings) -> Reflector:
    return Reflector(lister, lambda j: j.job_id, **settings)


def view(watch: Reflector, job_id: str) -> JobView:
    return JobView(watch.items.get(job_id), watch.snapshot_started)


class FakeSqueue:
    def __init__(self, jobs=()):
        self.jobs = list(jobs)
        self.calls = 0
        self.error: str | None = None

    async def __call__(self):
        self.calls += 1
        if self.error:
            raise SlurmCommandError(["squeue"], self.error, 1)
        return list(self.jobs)


async def test_many_readers_one_call_per_interval():
    fake = FakeSqueue([job(str(i)) for i in range(5)])
    watch = SlurmJobReflector(fake, interval=0.2)
    watch.ensure_started()
    await asyncio.sleep(0.05)
    for _ in range(200):  # 200 polls from many spawners cost nothing
        for i in range(5):
            assert view(watch, str(i)).job is not None
    await asyncio.sleep(1.0)
    watch.stop()
    assert 5 <= fake.calls <= 7


async def test_kicks_from_many_waiters_coalesce():
    fake = FakeSqueue([job()])
    watch = SlurmJobReflector(fake, interval=1.0)
    watch.ensure_started()
    await asyncio.sleep(0.05)
    calls_before = fake.calls
    now = time.time()
    results = await asyncio.gather(*(watch.wait_for_snapshot(now, timeout=2) for _ in range(20)))
    watch.stop()
    assert all(results)
    assert fake.calls - calls_before == 1


async def test_failure_keeps_last_state_and_is_not_evidence():
    fake = FakeSqueue([job("7")])
    watch = SlurmJobReflector(fake, interval=0.05, max_backoff=0.1)
    assert await watch.refresh()
    good = watch.snapshot_started
    fake.error = "slurm_load_jobs error: Zero Bytes were transmitted or received"
    fake.jobs = []
    assert not await watch.refresh()
    assert not await watch.refresh()
    seen = view(watch, "7")
    assert seen.job is not None and seen.job.state == "RUNNING"
    assert watch.snapshot_started == good
    assert watch.health()["consecutive_failures"] == 2
    assert "Zero Bytes" in watch.health()["last_error"]
    fake.error = None
    assert await watch.refresh()
    assert view(watch, "7").known_gone(submitted_at=0)
    assert watch.health()["slurm_answering"] and watch.snapshot_started > good


async def test_absence_counts_only_in_a_snapshot_begun_after_submission():
    fake = FakeSqueue([])
    watch = SlurmJobReflector(fake)
    assert await watch.refresh()
    submitted = time.time() + 0.001
    assert not view(watch, "8").known_gone(submitted)  # the snapshot predates the job
    await asyncio.sleep(0.01)
    assert await watch.refresh()
    assert view(watch, "8").known_gone(submitted)


async def test_carme_jobs_are_those_with_the_prefix_and_a_carme_comment():
    view_ = SlurmView(job_name_prefix="carme-")
    view_.jobs.items = {j.job_id: j for j in [
        job("1", name="carme-alice", comment="carme:alice/"), job("2", name="other", comment="carme:bob/"),
        job("3", name="carme-x", comment="someone else's"),
    ]}
    assert [j.job_id for j in view_.carme_jobs()] == ["1"]
    document = view_.jobs_document()
    assert [(j["job_id"], j["carme"], j["carme_user"]) for j in document["jobs"]] == [
        ("1", True, "alice"), ("2", False, None), ("3", False, None)]
    assert document["job_name_prefix"] == "carme-"


async def test_backoff_grows_and_is_capped():
    watch = SlurmJobReflector(FakeSqueue(), interval=2, max_backoff=10, stale_warning_after=0)
    assert watch._delay() == 2
    delays = []
    for _ in range(6):
        watch._record_failure("down")
        delays.append(watch._delay())
    assert delays == [2, 4, 8, 10, 10, 10]


def test_squeue_fixtures_parse():
    jobs = {j.job_id: j for j in slurm.parse_squeue_json((FIXTURES / "squeue-running-pending.json").read_text())}
    assert jobs["2"].is_running and jobs["2"].batch_host == "carme-n1"
    assert jobs["4"].is_pending and jobs["4"].reason == "Resources" and jobs["4"].start_time > 0
    done = {j.job_id: j for j in slurm.parse_squeue_json((FIXTURES / "squeue-finished.json").read_text())}
    assert done["6"].state == "FAILED" and done["6"].exit_status == 3 and done["6"].is_terminal
    assert done["2"].state == "CANCELLED" and done["2"].exit_signal == 15
    assert done["6"].output_path == "/tmp/fail-6.out"
    assert (jobs["1"].gpus, jobs["2"].gpus, jobs["4"].gpus) == (2, 1, 4)  # tres_per_node gres:gpu:N (22.05)
    assert SlurmJob.from_dict(jobs["2"].to_dict()) == jobs["2"]  # the view's JSON round-trips


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", '{"jobs": 3}', '{"jobs": [], "errors": [{"error": "boom"}]}'],
)
def test_unparsable_squeue_is_an_error_not_an_empty_queue(text):
    with pytest.raises((ValueError, KeyError, TypeError)):
        slurm.parse_squeue_json(text)


def test_unknown_state_is_not_terminal():
    assert not job(state="SOMETHING_NEW").is_terminal
    assert job(state="NODE_FAIL").is_terminal


def test_sbatch_output():
    assert slurm.parse_sbatch_output("123\n") == "123"
    assert slurm.parse_sbatch_output("sbatch: warning: x\n456;cluster\n") == "456"
    for bad in ("", "Submitted batch job 1", "1; rm -rf /"):
        with pytest.raises(ValueError):
            slurm.parse_sbatch_output(bad)


async def test_stale_warning_counts_from_the_last_good_answer(caplog):
    fake = FakeSqueue([job()])
    watch = SlurmJobReflector(fake, interval=5, stale_warning_after=8)
    assert await watch.refresh()
    assert watch.health()["warning"] is None
    watch.snapshot_started -= 10  # the last good answer was 10 s ago
    fake.error = "Unable to contact slurm controller"
    with caplog.at_level("WARNING"):
        await watch.refresh()
    warning = watch.health()["warning"]
    assert warning and "has not answered for 10 s" in warning and "Unable to contact" in warning
    assert any("has not answered" in r.getMessage() for r in caplog.records)
    assert view(watch, "7").job is not None  # the server's job is still known


def test_delay_wakes_the_watch_when_the_warning_falls_due():
    watch = SlurmJobReflector(FakeSqueue(), interval=5, max_backoff=60, stale_warning_after=12)
    watch.snapshot_started = time.time() - 5
    for _ in range(4):
        watch._record_failure("down")
    assert watch._delay() <= 7.5  # backoff alone would wait 40 s


async def test_a_pending_job_s_place_among_carme_s_pending_jobs_of_its_partition():
    view_ = SlurmView(job_name_prefix="carme-")
    waiting = [job(str(i), name=f"carme-u{i}", comment=f"carme:u{i}/", state="PENDING", partition=p, submit_time=t)
               for i, p, t in ((11, "batch", 30), (12, "batch", 10), (13, "interactive", 5), (14, "batch", 20))]
    view_.jobs.items = {j.job_id: j for j in [*waiting, job("15", name="other", state="PENDING", partition="batch")]}
    assert view_.pending_position(waiting[0]) == (3, 3)  # submitted last of the three in batch
    assert view_.pending_position(waiting[1]) == (1, 3)
    assert view_.pending_position(waiting[2]) == (1, 1)
