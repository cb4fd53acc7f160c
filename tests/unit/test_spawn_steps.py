"""Issue 17: the time of each spawn step, with the job's own clock taken only when plausible."""

from __future__ import annotations

import pytest

from carme_spawner.spawn_steps import STEPS, SpawnSteps


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_steps_are_seconds_since_the_request_in_order():
    mono, wall = Clock(100.0), Clock(1_800_000_000.0)
    steps = SpawnSteps(clock=mono, wall=wall)
    mono.now += 0.004
    steps.mark("options parsed")
    mono.now += 0.5
    steps.mark("sbatch returned")
    steps.mark("sbatch returned")  # the first time counts
    assert steps.as_dict() == {"options parsed": 0.004, "sbatch returned": 0.504}
    assert steps.line() == "options parsed 0.004 s, sbatch returned 0.504 s"
    with pytest.raises(ValueError):
        steps.mark("teleported")


def test_the_launcher_s_times_come_from_its_output_when_plausible():
    mono, wall = Clock(0.0), Clock(1_800_000_000.0)
    steps = SpawnSteps(clock=mono, wall=wall)
    wall.now += 3
    output = ("carme: job 7 starting on carme-n1\n"
              "carme launcher: started at 1800000000.900000\n"
              "carme launcher: port 40000 chosen; exec at 1800000001.100000: apptainer\n"
              "carme launcher: port 40000 reported at 1800000001.200000\n")
    steps.mark_job_clock(output, submitted_wall=1_800_000_000.1)
    assert steps.as_dict() == {"launcher started": 0.9, "container exec": 1.1}
    # the line of launchers before the report ran beside the exec (jobs started before an upgrade)
    older_wall = Clock(1_800_000_000.0)
    older = SpawnSteps(clock=mono, wall=older_wall)
    older_wall.now += 3
    older.mark_job_clock("carme launcher: port 40000 reported; exec at 1800000001.300000: apptainer\n",
                         submitted_wall=1_800_000_000.1)
    assert older.as_dict() == {"container exec": 1.3}
    # a job that claims the future, or a time before its submission, is not believed
    later = SpawnSteps(clock=mono, wall=wall)
    later.mark_job_clock("carme launcher: started at 1900000000.0\ncarme launcher: port 1 reported; exec at 1.5\n",
                         submitted_wall=1_800_000_000.1)
    assert later.as_dict() == {}


def test_the_steps_are_the_issue_s_list():
    assert STEPS[0] == "options parsed" and STEPS[-1] == "proxy route added" and len(STEPS) == 10
