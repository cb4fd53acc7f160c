"""CarmeSpawner's wait for its job: event-driven, no spinning while SLURM's news is pending."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from carme_spawner.job_reflector import JobView
from carme_spawner.spawner import CarmeSpawner

from .test_job_reflector import job


class SlowWatch:
    """Shows the job PENDING until SLURM's next snapshot, 0.3 s from now, then RUNNING."""

    def __init__(self):
        self.views = 0
        self.news_at = asyncio.get_running_loop().time() + 0.3

    def pending(self) -> bool:
        return asyncio.get_running_loop().time() < self.news_at

    def view(self, job_id):
        self.views += 1
        pending = self.pending()
        return JobView(job(job_id, state="PENDING" if pending else "RUNNING"), snapshot_started=100.0 if pending else 200.0)

    async def wait_for_snapshot(self, newer_than, timeout=None, kick=True):
        await asyncio.sleep(max(0.0, self.news_at - asyncio.get_running_loop().time()))
        return True


async def test_a_reported_port_does_not_spin_the_wait_loop():
    reported = asyncio.Event()
    reported.set()  # the job reported its port before SLURM's next snapshot says RUNNING
    fake = SimpleNamespace(
        watch=SlowWatch(), job_id="7", submitted_at=50.0, _port_reported=reported, _emit=lambda *a: None
    )
    fake._job_over = lambda view: CarmeSpawner._job_over(fake, view)
    running = await CarmeSpawner._wait_for_job_and_port(fake)
    assert running.is_running
    assert fake.watch.views <= 3, f"the loop turned {fake.watch.views} times while waiting 0.3 s"
