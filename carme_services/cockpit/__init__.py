"""carme-cockpit: the admins' overview of the cluster, their actions, and the job history.

    python -m carme_services.cockpit [--help-all]

The overview joins the hub's ONE view of SLURM (nodes with GPUs by type, jobs) with the hub's
servers (`overview`, pure), cached a few seconds: no SLURM command per page view. Actions (stop a
server through the hub's API, drain or resume a node with `scontrol update`, `actions`) need
`custom:carme-cockpit:admin` and are audited (`store`); reading needs `custom:carme-cockpit:read`.
The history reads `sacct` of bounded windows through a cached reader (`accounting`, `history`),
as JSON or CSV, with charts (`charts`).
"""

from .service import CockpitService, hub_service

main = CockpitService.launch_instance

__all__ = ["CockpitService", "hub_service", "main"]
