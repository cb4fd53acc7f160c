"""carme-sessions: a card per server (status, image, GPUs, node, project, time left, end reason),
the history of recent sessions from SLURM's accounting, Extend and Relaunch.

    python -m carme_services.sessions [--help-all]

The cards join the hub's servers (options, state) with the hub's ONE view of SLURM (`cards`); the
history is sacct's, joined with the choices SLURM does not know, kept per job id (`history`,
`store`). Extend is admitted like a spawn (`extend`), then `scontrol update TimeLimit` as root
decides; Relaunch and Stop go through the hub's REST API. The page polls the API every few seconds.
"""

from .service import SessionsService, hub_service

main = SessionsService.launch_instance

__all__ = ["SessionsService", "hub_service", "main"]
