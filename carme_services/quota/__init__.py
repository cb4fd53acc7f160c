"""carme-quota: Carme's quota policy kept in SLURM, and explained to users, managers and admins.

    python -m carme_services.quota [--QuotaService.dry_run=True] [--once] [--help-all]

The service owns Carme's store (`carme_quota.store`: overrides, projects, membership requests,
the audit) and the sync: at start, every `sync_interval` and after every change it turns the
policy (`CarmeQuota.role_limits`, the overrides, the projects) into SLURM associations with
`sacctmgr` (`carme_quota.sacctmgr`), reporting drift instead of overwriting it. Its REST API
(`api`) serves users their own usage and limits, managers their projects' requests, admins
everything. It reads SLURM through the hub's one view (usage, jobs) and runs `sacctmgr` only to
read and change associations during a sync.
"""

from .service import QuotaService, hub_service

main = QuotaService.launch_instance

__all__ = ["QuotaService", "hub_service", "main"]
