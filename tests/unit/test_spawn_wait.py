"""Following a job: event-driven, no spinning while SLURM's news is pending, and every step shown."""

from __future__ import annotations

import asyncio
import logging

from carme_slurm import JobView
from carme_spawner.job_follow import JobFollower

from .test_job_reflector import job


class SlowView:
    """Shows the job PENDING until SLURM's next snapshot, 0.3 s from now, then RUNNING."""

    def __init__(self):
        self.views = 0
        self.news_at = asyncio.get_running_loop().time() + 0.3
        self.jobs = self  # the jobs reflector's wait_for_snapshot lives here too

    def pending(self) -> bool:
        return asyncio.get_running_loop().time() < self.news_at

    def job(self, job_id):
        self.views += 1
        pending = self.pending()
        return JobView(job(job_id, state="PENDING" if pending else "RUNNING"), snapshot_started=100.0 if pending else 200.0)

    async def wait_for_snapshot(self, newer_than, timeout=None, kick=True):
        await asyncio.sleep(max(0.0, self.news_at - asyncio.get_running_loop().time()))
        return True


def follower(view, events):
    return JobFollower(view, "7", 50.0, lambda message, percent: events.append((percent, message)), [],
                       logging.getLogger("test"))


async def test_a_reported_port_does_not_spin_the_wait_loop():
    reported = asyncio.Event()
    reported.set()  # the job reported its port before SLURM's next snapshot says RUNNING
    view, events = SlowView(), []
    running = await follower(view, events).until_running_with_port(reported)
    assert running.is_running
    assert view.views <= 3, f"the loop turned {view.views} times while waiting 0.3 s"


class RunningView(SlowView):
    def __init__(self):
        super().__init__()
        self.news_at = 0.0  # the first snapshot already shows the job RUNNING


async def test_the_running_step_is_shown_even_when_the_port_came_in_the_same_snapshot():
    reported = asyncio.Event()
    reported.set()
    events = []
    await follower(RunningView(), events).until_running_with_port(reported)
    assert events == [(60, "Job 7 is running on carme-n1; starting JupyterLab in the container.")]
