"""Extend a running server (issue 21): admitted like a spawn (runtime per server, the GPU-hours left),
then SLURM's own `scontrol update JobId=J TimeLimit=N`."""

from __future__ import annotations

import pytest

from carme_quota.admission import Usage, admit_extension
from carme_quota.limits import Limits
from carme_slurm.commands import time_limit_argv


def test_an_extension_is_admitted_like_a_spawn_within_runtime_and_budget():
    usage = Usage(servers=1, started_today=1, gpu_minutes_used=30, gpu_minutes_running=60)
    limits = Limits(max_runtime_minutes=120, gpu_hours=2)
    assert admit_extension(1, 60, 30, limits, usage) is None  # 30 of the 30 GPU-minutes left
    refusal = admit_extension(1, 60, 90, limits, usage)
    assert refusal.limit == "max_runtime_minutes" and "up to 2 h" in refusal.message and "2 h 30 min" in refusal.message
    refusal = admit_extension(2, 60, 30, limits, usage)
    assert refusal.limit == "gpu_hours" and "are left this period" in refusal.message
    assert admit_extension(0, 60, 60, Limits(max_runtime_minutes=120, gpu_hours=0), usage) is None  # CPU only
    assert time_limit_argv("42", 75) == ["scontrol", "update", "JobId=42", "TimeLimit=75"]
    for bad in (("4;2", 5), ("42", 0), ("42", True), ("42", 1.5)):
        with pytest.raises(ValueError):
            time_limit_argv(*bad)
