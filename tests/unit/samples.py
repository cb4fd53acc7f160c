"""Samples shared by the unit tests: site limits (options, batch_script) and SLURM jobs."""

from carme_slurm.jobs import SlurmJob
from carme_spawner.options import PartitionPolicy, SpawnLimits

LIMITS = SpawnLimits(
    partitions=(PartitionPolicy("interactive", 2, 8 * 60), PartitionPolicy("batch", 8, 7 * 24 * 60)),
    max_gpus=4, max_runtime_minutes=7 * 24 * 60, default_runtime_minutes=60,
    cpus_per_gpu=4, memory_mb_per_gpu=16000, min_cpus=2, min_memory_mb=4000,
    interactive_max_gpus=2, interactive_max_runtime_minutes=8 * 60,
    routing_small_partition="interactive", routing_large_partition="batch",
    allowed_images={"base": "/opt/carme/images/base.sif", "torch": "docker://nvcr.io/nvidia/torch:24.01-py3"},
    default_image="base",
)


def slurm_job(job_id="7", name="carme-alice", state="RUNNING", **kw) -> SlurmJob:
    """A job as the watch parses it, with `kw` over plain defaults."""
    fields = dict(
        job_id=job_id, name=name, user="alice", state=state, reason="None", partition="interactive",
        nodes="carme-n1", batch_host="carme-n1", comment="", submit_time=0, start_time=0, end_time=0,
        time_limit_minutes=60, exit_status=None, exit_signal=None, output_path="",
    )
    fields.update(kw)
    return SlurmJob(**fields)
