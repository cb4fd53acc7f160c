"""carme-scratch: jobs' fast scratch on the nodes' SSDs (a directory, or BeeOND over several nodes).

    python -m carme_services.scratch [--once] [--dry-run] [--help-all]

The SLURM Prolog and Epilog that make and remove the scratch are rendered from this service's
settings (`carme scratch-scripts --out DIR`, see `carme_slurm.node_scripts`), and its wiring hands
the same layout to the spawner, which binds the job's scratch at `container_path` and sets
$CARME_SCRATCH. The service lists the scratch found (admins all, users their own), sweeps what
jobs SLURM no longer knows left behind, and lets admins force a cleanup (audited).
"""

from .service import ScratchService, hub_service

main = ScratchService.launch_instance

__all__ = ["ScratchService", "hub_service", "main"]
