"""carme_spawner.admission: a user's use from the hub's view, with submissions in flight until a snapshot sees them."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

from carme_slurm import Reflector
from carme_slurm.accounting import AccountedJob, AssociationUsage
from carme_spawner.admission import HubAdmission

from .samples import slurm_job


def view(jobs=(), usage=(), todays=(), snapshot_started=0.0):
    """A view's reflectors holding these snapshots (grouped by user as the hub's are)."""
    def reflector(items, key, group=None):
        r = Reflector(None, key, group=group)
        r.set_items(items)
        r.snapshot_started = snapshot_started
        return r

    return SimpleNamespace(jobs=reflector(jobs, lambda j: j.job_id, lambda j: j.user),
                           usage=reflector(usage, lambda u: u.key),
                           recent_jobs=reflector(todays, lambda j: j.job_id, lambda j: j.user))


def test_live_jobs_in_any_account_and_in_flight_submissions_count_as_servers():
    now = time.time()
    jobs = [slurm_job(job_id="1", user="alice", state="RUNNING", name="carme-alice", submit_time=int(now)),
            slurm_job(job_id="2", user="alice", state="PENDING", name="my-own-sbatch", account="vision",
                      submit_time=int(now)),
            slurm_job(job_id="3", user="alice", state="COMPLETED", name="carme-alice-old", submit_time=int(now)),
            slurm_job(job_id="4", user="bob", state="RUNNING", name="carme-bob", submit_time=int(now))]
    admission = HubAdmission()
    admission.submitted("alice", "5", now)
    usage = admission.usage(view(jobs, snapshot_started=now - 1), "alice", "carme-dev", "carme-", "MONTHLY")
    assert usage.servers == 3  # 1, 2 and the in-flight 5
    # once a snapshot begun after the submission exists, the view alone tells (here: 5 is not listed)
    usage = admission.usage(view(jobs, snapshot_started=now + 1), "alice", "carme-dev", "carme-", "MONTHLY")
    assert usage.servers == 2 and admission.in_flight(view(snapshot_started=now + 1), "alice") == set()


def test_todays_carme_servers_come_from_accounting_and_the_live_table_counted_once():
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    todays = [AccountedJob("10", "alice", "carme-dev", "carme-alice", midnight + timedelta(minutes=1), None, None,
                           "COMPLETED"),
              AccountedJob("11", "alice", "carme-dev", "carme-alice", midnight - timedelta(minutes=1), None, None,
                           "COMPLETED"),  # yesterday's
              AccountedJob("12", "alice", "carme-dev", "batch-thing", midnight + timedelta(minutes=2), None, None,
                           "COMPLETED")]  # not Carme's
    live = [slurm_job(job_id="10", user="alice", state="RUNNING", name="carme-alice",
                      submit_time=int((midnight + timedelta(minutes=1)).timestamp())),
            slurm_job(job_id="13", user="alice", state="PENDING", name="carme-alice-two", submit_time=int(time.time()))]
    usage = HubAdmission().usage(view(live, todays=todays), "alice", "carme-dev", "carme-", "MONTHLY")
    assert usage.started_today == 2  # 10 (in both) and 13


def test_gpu_minutes_come_from_the_jobs_association():
    rows = [AssociationUsage("carme-dev", "alice", 120.0, 30.0, 5), AssociationUsage("vision", "alice", 999.0, 0, 9)]
    usage = HubAdmission().usage(view(usage=rows), "alice", "carme-dev", "carme-", "MONTHLY")
    assert (usage.gpu_minutes_used, usage.gpu_minutes_running) == (120.0, 30.0)
    assert usage.resets_at.day == 1


def test_one_users_spawns_pass_one_at_a_time_and_other_users_are_not_held():
    admission, order = HubAdmission(), []

    async def spawn(user, tag, hold):
        async with admission.slot(user):
            order.append(f"{tag} in")
            await asyncio.sleep(hold)
            order.append(f"{tag} out")

    async def main():
        await asyncio.gather(spawn("alice", "a1", 0.05), spawn("alice", "a2", 0), spawn("bob", "b1", 0))

    asyncio.run(main())
    assert order.index("a1 out") < order.index("a2 in")
    assert order.index("b1 in") < order.index("a1 out")
