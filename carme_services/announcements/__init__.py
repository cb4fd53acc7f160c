"""carme-announcements: admins post notices (severity, text, start, expiry) shown on the hub's pages until they expire.

    python -m carme_services.announcements [--help-all]

The notices and the audit of every change are in its store (`store`); each new one is checked
(`notices`); the ones not yet expired are written to a file the hub's pages read
(`carme_core.announcements`); API, page and forms in `handlers`.
"""

from .service import AnnouncementsService, hub_service

main = AnnouncementsService.launch_instance

__all__ = ["AnnouncementsService", "hub_service", "main"]
