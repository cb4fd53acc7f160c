"""Issue 24 (found by benchmarks/controller_load.py growing to 50 servers): a watch snapshot begun while
sbatch was still running may not list the new job, so it is no evidence that the job is gone. The
spawner dates a job's "gone" evidence from when sbatch RETURNED (`accepted_at`), not from when it began."""

from __future__ import annotations

import logging

from carme_slurm.reflector import JobView
from carme_spawner.job_follow import JobFollower


def follower(accepted_at: float) -> JobFollower:
    return JobFollower(None, "670", accepted_at, lambda *a: None, [], logging.getLogger("test"))


def test_a_snapshot_begun_while_sbatch_ran_is_no_evidence_one_begun_after_is():
    began, returned = 1000.0, 1000.8  # sbatch took 0.8 s under a 50-server storm
    during = JobView(job=None, snapshot_started=1000.3)
    after = JobView(job=None, snapshot_started=1001.0)
    assert not follower(returned).job_over(during)
    assert follower(returned).job_over(after)
    assert follower(began).job_over(during)  # what dating it from sbatch's start wrongly concluded
