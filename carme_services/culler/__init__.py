"""carme-culler: servers whose GPUs and JupyterLab stay idle are warned, then stopped.

    python -m carme_services.culler [--dry-run] [--once] [--help-all]

Every `interval` it samples each node that runs a Carme GPU job with one `nvidia-smi --query-gpu`
(through `node_command`, as root: outside the job's control), maps the node's GPU indexes to jobs
by SLURM's allocation (the view's `gres_detail`), and judges every ready server (`idle`): idle when
its GPUs stayed below `gpu_threshold` and JupyterLab saw no activity for `idle_minutes`; warned,
then stopped `warn_minutes` later if still idle; "Keep running" restarts the clock. Exempt roles,
users, groups and projects are never stopped; `dry_run` lists what would be.
"""

from .service import CullerService, hub_service

main = CullerService.launch_instance

__all__ = ["CullerService", "hub_service", "main"]
