"""The form's start estimate: SLURM's `sbatch --test-only` answer, in words, cached per request."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from carme_spawner.expected_start import EstimateCache, describe, parse_test_only, unavailable

# sbatch --test-only of SLURM 22.05 on the dev cluster (stderr)
ANSWER = "sbatch: Job 1441 to start at 2026-12-02T04:44:59 using 1 processors on nodes carme-n1 in partition interactive\n"


def test_slurm_s_answer_gives_the_start_the_nodes_and_the_partition():
    e = parse_test_only(ANSWER)
    assert e.start == datetime(2026, 12, 2, 4, 44, 59).timestamp()  # the controller's local time
    assert (e.cpus, e.nodes, e.partition) == (1, "carme-n1", "interactive")
    with pytest.raises(ValueError, match="not an sbatch --test-only answer"):
        parse_test_only("sbatch: error: Batch job submission failed: Invalid account")


def test_soon_is_now_and_later_is_a_time_and_a_wait():
    e = parse_test_only(ANSWER)
    assert describe(e, e.start - 30)["message"] == "starts now" and describe(e, e.start - 30)["starts_now"]
    later = describe(e, e.start - 35 * 60)
    assert later["message"] == "expected start ~04:44 (in 35 min)" and not later["starts_now"]
    assert describe(e, e.start - 5 * 3600)["message"] == "expected start ~04:44 (in 5.0 h)"  # as format_time says
    assert describe(e, e.start - 2 * 86400)["message"] == "expected start ~2026-12-02 04:44 (in 48.0 h)"
    assert unavailable("slurmctld timed out") == {"available": False,
                                                  "message": "estimate unavailable: slurmctld timed out"}


async def test_one_call_per_distinct_request_while_it_is_fresh():
    cache, calls = EstimateCache(), []

    async def ask():
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"message": "starts now"}

    answers = await asyncio.gather(*(cache.get(("alice", "req"), 30, ask) for _ in range(5)))
    assert answers == [{"message": "starts now"}] * 5 and len(calls) == 1  # concurrent asks share it
    await cache.get(("alice", "req"), 30, ask)
    assert len(calls) == 1
    await cache.get(("alice", "other"), 30, ask)
    await cache.get(("alice", "req"), 0, ask)  # expired
    assert len(calls) == 3


def test_slurm_25_05s_test_only_line_with_its_cluster_parses_too():
    # src/api/allocate.c of 25.05: "Job %u to start at %s%s%s a using %u processors on nodes %s in partition %s"
    e = parse_test_only("sbatch: Job 1441 to start at 2026-12-02T14:20:00 on cluster carme-dev a using 2 "
                        "processors on nodes carme-n1 in partition batch")
    assert (e.nodes, e.partition) == ("carme-n1", "batch")
