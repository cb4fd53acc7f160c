"""The carme-announcements service: admins post notices (maintenance, outages) that every page of the hub shows.

The notices live in its store (with the audit of every change). After each change, at its start
and every `refresh_interval`, it writes those not yet expired to ONE file in the hub's state
directory (`carme_core.announcements`, atomically, mode 0644): the hub's pages read that file
through `JupyterHub.template_vars` (this module's `hub_service` declares them), so a page view
never waits for this service, and the hub shows each notice from its start until its expiry.
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from pathlib import Path

from prometheus_client import Counter, Gauge
from traitlets import Float, Integer, TraitError, Unicode, validate

from carme_core.announcements import current, default_path, template_vars, write_notices
from carme_core.db import now_utc

from ..base import CarmeService, PeriodicTask
from ..wiring import ServiceSettings, admins_role, checked_settings, service_spec
from .notices import NewNotice, NoticeLimits
from .store import AnnouncementStore, database

NAME = "carme-announcements"
ADMIN_SCOPE = "custom:carme-announcements:admin"  # post and delete notices, read the audit


class AnnouncementsService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "Notices with severity, start and expiry, shown on the hub's pages until they expire."

    db_url = Unicode("", config=True, help="SQLAlchemy URL of the announcements store (the notices and the audit "
                     "of every change); default sqlite:///<carme.state_dir>/carme-announcements.sqlite.")
    current_file = Unicode("", config=True, help="The file the hub's pages read the notices from (written "
                           "atomically after each change); default <carme.state_dir>/carme-announcements.json, "
                           "where the hub looks for it.")
    max_text_length = Integer(500, config=True, help="The most characters a notice's text may have.")
    max_duration_days = Float(31.0, config=True, help="The longest a notice may show: its expiry at most this "
                              "many days after its start.")
    max_start_ahead_days = Float(365.0, config=True, help="How far ahead a notice's start may be.")
    refresh_interval = Float(60.0, config=True, help="Seconds between rewrites of the file from the store (it is "
                             "also written after every change; the hub filters by start and expiry itself).")
    history_days = Float(30.0, config=True, help="Days expired and deleted notices stay in the admins' list.")

    aliases = {**CarmeService.aliases, "db-url": "AnnouncementsService.db_url"}

    @validate("max_duration_days", "max_start_ahead_days", "refresh_interval", "history_days")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"AnnouncementsService.{proposal.trait.name} must be > 0, not {proposal.value}")
        return proposal.value

    @validate("max_text_length")
    def _check_length(self, proposal):
        if not 1 <= proposal.value <= 10000:
            raise TraitError(f"AnnouncementsService.max_text_length must be from 1 to 10000, not {proposal.value}")
        return proposal.value

    def initialize(self, argv=None):
        super().initialize(argv)
        for name in ("db_url", "current_file"):
            if not getattr(self, name):
                raise SystemExit(f"{NAME}: {name} is not set (carme: announcements: {name}: in the settings file)")
        self.write_lock = asyncio.Lock()

    @cached_property
    def store(self) -> AnnouncementStore:
        db = database(self.db_url)
        db.upgrade()
        return AnnouncementStore(db)

    @property
    def limits(self) -> NoticeLimits:
        return NoticeLimits(self.max_text_length, self.max_duration_days, self.max_start_ahead_days)

    @cached_property
    def counters(self) -> dict:
        registry = self.metrics.registry
        return {
            "changes": Counter("carme_announcements_changes", "Notices posted and deleted", ["action"],
                               registry=registry),
            "current": Gauge("carme_announcements_current", "Notices shown now", registry=registry),
        }

    def web_handlers(self):
        from .handlers import handlers

        return handlers()

    def periodic_tasks(self):
        return [PeriodicTask("publish", self.refresh_interval, self.publish)]

    # ---- the store, off the event loop -------------------------------------------------------------

    async def in_store(self, method, *args, **kwargs):
        return await asyncio.to_thread(method, *args, **kwargs)

    async def publish(self) -> list[dict]:
        """Write the notices not yet expired to the hub's file; the live ones."""
        async with self.write_lock:  # one writer: the file always follows the store's last change
            live = await self.in_store(self.store.listing)
            await asyncio.to_thread(write_notices, self.current_file, live)
        self.counters["current"].set(len(current(live, time.time())))
        return live

    async def post(self, actor: str, notice: NewNotice) -> dict:
        posted = await self.in_store(self.store.post, actor, notice)
        self.counters["changes"].labels("posted").inc()
        self.log.info("announcement %d posted by %s: %s, %s to %s: %r", posted["id"], actor, posted["severity"],
                      posted["start_iso"], posted["expiry_iso"], posted["text"][:80])
        await self.publish()
        return posted

    async def delete(self, actor: str, announcement_id: int) -> dict | None:
        deleted = await self.in_store(self.store.delete, actor, announcement_id)
        if deleted is not None:
            self.counters["changes"].labels("deleted").inc()
            self.log.info("announcement %d deleted by %s", announcement_id, actor)
            await self.publish()
        return deleted

    async def listing(self, include_past: bool = False) -> list[dict]:
        return await self.in_store(self.store.listing, now_utc(), self.history_days if include_past else 0.0)

    async def current(self) -> list[dict]:
        return current(await self.in_store(self.store.listing), time.time())


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(AnnouncementsService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-announcements.sqlite")
    values.setdefault("current_file", str(default_path(settings.state_dir)))
    return {
        "service": service_spec(AnnouncementsService, settings, values,
                                url=values.get("url", "http://127.0.0.1:10111"),
                                allowed_scopes=[ADMIN_SCOPE], display=True),
        "custom_scopes": {ADMIN_SCOPE: {"description": "Post and delete the hub's announcements; read their audit."}},
        "roles": [admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE],
                              "The hub's admins post and delete announcements.")],
        # everyone logged in reads the current notices (api/announcements/current, the page)
        "user_scopes": [f"access:services!service={NAME}"],
        # the hub's pages: page.html's `announcement` (and spawn.html's, home.html's) from the file
        "template_vars": template_vars(values["current_file"]),
    }


if __name__ == "__main__":
    AnnouncementsService.launch_instance()
