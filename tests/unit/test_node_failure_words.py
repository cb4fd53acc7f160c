"""Issue 24: a server whose node fails ends with words a user understands, and is never started again
elsewhere by SLURM under the old server's name (`--no-requeue`)."""

from __future__ import annotations

from carme_slurm import SlurmJob
from carme_slurm.reasons import describe_end_state
from carme_spawner.progress import describe_end


def ended(state: str, reason: str = "None", exit_status: int | None = 0) -> SlurmJob:
    return SlurmJob(job_id="41", name="carme-alice", user="alice", state=state, reason=reason, partition="interactive",
                    nodes="carme-n2", batch_host="carme-n2", comment="carme:alice/", submit_time=0, start_time=0,
                    end_time=0, time_limit_minutes=60, exit_status=exit_status, exit_signal=None, output_path="")


def test_a_node_failure_says_node_failure_in_plain_words():
    assert describe_end_state("NODE_FAIL") == "node failure: its node stopped answering SLURM"
    assert describe_end(ended("NODE_FAIL"), "41") == \
        "SLURM job 41 ended: NODE_FAIL, exit code 0 (node failure: its node stopped answering SLURM)."
    words = describe_end(ended("NODE_FAIL", "NodeDown"), "41")
    assert words.startswith("SLURM job 41 ended: NODE_FAIL") and "node failure" in words


def test_a_time_limit_and_memory_say_why_and_a_cancel_stays_short():
    assert "reached its time limit" in describe_end(ended("TIMEOUT", "TimeLimit"), "41")
    assert "ran out of memory" in describe_end(ended("OUT_OF_MEMORY"), "41")
    assert describe_end(ended("CANCELLED"), "41") == "SLURM job 41 ended: CANCELLED, exit code 0."
