"""carme_slurm.accounting: sshare's usage per association and sacct's jobs, as this SLURM prints them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from carme_slurm.accounting import gpu_count, parse_sacct, parse_sshare

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "accounting"


def test_sshare_of_22_05_gives_every_association_with_its_gpu_minutes():
    usage = {u.key: u for u in parse_sshare((FIXTURES / "sshare-22.05.txt").read_text())}
    assert {"root/", "root/root", "carme-dev/", "carme-dev/alice", "carme-dev/erin"} <= set(usage)
    account = usage["carme-dev/"]
    assert account.user == "" and account.gpu_minutes_used == 4.0 and account.raw_usage > 0
    assert usage["carme-dev/admin"].gpu_minutes_used == 0.0


def test_typed_gpus_count_once_whether_or_not_slurm_prints_the_total():
    usage = {u.key: u for u in parse_sshare((FIXTURES / "sshare-typed.txt").read_text())}
    assert usage["vision/"].gpu_minutes_used == 240.0  # gres/gpu is the total: the typed ones are in it
    assert usage["vision/dave"].gpu_minutes_used == 240.0  # no total printed: typed ones summed
    assert usage["vision/dave"].gpu_minutes_running == 120.0


@pytest.mark.parametrize("tres, gpus", [
    ("", 0), ("cpu=1,mem=1G", 0), ("gres/gpu=2", 2), ("gres/gpu=2,gres/gpu:a100=2", 2),
    ("gres/gpu:a100=1,gres/gpu:1g.10gb=3", 4),
])
def test_gpu_count(tres, gpus):
    assert gpu_count(tres) == gpus


def test_sacct_of_22_05_gives_jobs_with_times_and_plain_states():
    jobs = parse_sacct((FIXTURES / "sacct-22.05.txt").read_text())
    assert jobs and all(j.job_id.isdigit() for j in jobs)
    cancelled = next(j for j in jobs if j.name.startswith("carme-"))
    assert cancelled.state == "CANCELLED" and cancelled.account == "carme-dev"
    assert isinstance(cancelled.submitted, datetime) and cancelled.started >= cancelled.submitted


def test_sacct_pending_jobs_have_no_start():
    text = ("JobID|User|Account|JobName|Submit|Start|End|State|AllocTRES|ElapsedRaw\n"
            "7|bob|a|carme-bob|2026-12-01T10:00:00|Unknown|Unknown|PENDING||0\n")
    (job,) = parse_sacct(text)
    assert job.started is None and job.ended is None and job.state == "PENDING"


def test_a_missing_column_is_an_error_naming_it():
    with pytest.raises(ValueError, match="GrpTRESRaw"):
        parse_sshare("Account|User|RawUsage|TRESRunMins\n")


def test_sacct_jobs_carry_their_gpus_and_run_time():
    jobs = {j.job_id: j for j in parse_sacct((FIXTURES / "sacct-22.05.txt").read_text())}
    assert jobs["537"].gpus == 2 and jobs["537"].elapsed_s == 1 and jobs["537"].gpu_hours == 2 / 3600
    assert jobs["322"].gpus == 0 and jobs["322"].elapsed_s == 127
