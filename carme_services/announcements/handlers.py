"""carme-announcements' API and page (JSON under <prefix>api/):

    GET    api/announcements/current   the notices shown now (start <= now < expiry)       everyone logged in
    GET    api/announcements           scheduled and current ones (?past=1: also those      admin
                                       expired or deleted within history_days)
    POST   api/announcements           {"severity", "text", "start", "expiry" | "duration"}  admin
                                       -> 201 and the notice
    DELETE api/announcements/ID        -> 200 and the notice (deleted), 404 if none           admin
    GET    api/audit                   every change: who, when, what (?limit=N)               admin
    GET    /                           the page: the current notices; for admins the form and the list
    POST   /                           the page's forms (action=post|delete), with the XSRF token

admin is the scope custom:carme-announcements:admin (the hub's admins hold it). Bad input is
400 naming the field.
"""

from __future__ import annotations

from tornado import web

from carme_core.db import now_utc

from ..base import CarmeServiceHandler
from .notices import NoticeError, is_duration, parse_duration, parse_notice
from .service import ADMIN_SCOPE


class AnnouncementsHandler(CarmeServiceHandler):
    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def require_admin(self) -> None:
        self.require(self.is_admin(), f"posting, deleting and listing announcements needs {ADMIN_SCOPE}")

    def checked(self, body: dict):
        try:
            return parse_notice(body, now_utc(), self.service.limits)
        except NoticeError as e:
            raise web.HTTPError(400, str(e)) from None


def announcement_id(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise web.HTTPError(400, "id: must be an announcement's number")
    return int(text)


class CurrentHandler(AnnouncementsHandler):
    @web.authenticated
    async def get(self):
        self.write_json({"announcements": await self.service.current()})


class ListHandler(AnnouncementsHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        past = self.get_argument("past", "") not in ("", "0", "false")
        self.write_json({"announcements": await self.service.listing(include_past=past)})

    @web.authenticated
    async def post(self):
        self.require_admin()
        notice = self.checked(self.json_body())
        self.write_json(await self.service.post(self.username, notice), 201)


class OneHandler(AnnouncementsHandler):
    @web.authenticated
    async def delete(self, ident: str):
        self.require_admin()
        deleted = await self.service.delete(self.username, announcement_id(ident))
        if deleted is None:
            raise web.HTTPError(404, f"id: no announcement {ident} (or it is deleted already)")
        self.write_json(deleted)


class AuditHandler(AnnouncementsHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        try:
            limit = int(self.get_argument("limit", "100"))
        except ValueError:
            raise web.HTTPError(400, "limit: must be a whole number") from None
        if not 1 <= limit <= 1000:
            raise web.HTTPError(400, "limit: from 1 to 1000")
        self.write_json({"audit": await self.service.in_store(self.service.store.audit, limit)})


class AnnouncementsPage(AnnouncementsHandler):
    async def show(self, notice: str = "", kind: str = "success", form: dict | None = None) -> None:
        admin = self.is_admin()
        service = self.service
        self.finish(self.render_page(
            "announcements.html", current=await service.current(), is_admin=admin,
            listing=await service.listing(include_past=True) if admin else [],
            audit=await service.in_store(service.store.audit, 20) if admin else [],
            notice=notice, notice_kind=kind, form=form or {}, max_text_length=service.max_text_length))

    @web.authenticated
    async def get(self):
        await self.show()

    @web.authenticated
    async def post(self):
        self.require_admin()
        action = self.get_body_argument("action", "")
        if action == "delete":
            deleted = await self.service.delete(self.username, announcement_id(self.get_body_argument("id", "")))
            if deleted is None:
                return await self.show("That announcement is deleted already.", "warning")
            return await self.show(f"Announcement {deleted['id']} deleted.")
        if action != "post":
            raise web.HTTPError(400, "action: must be post or delete")
        form = {k: self.get_body_argument(k, "") for k in ("severity", "text", "start", "expiry")}
        try:  # the form's times are ISO 8601 (an empty start: now); its expiry may be a duration (2h)
            body = dict(form)
            if is_duration(body["expiry"]):
                body["duration"] = parse_duration(body.pop("expiry"), "expiry")
            notice = parse_notice(body, now_utc(), self.service.limits)
        except NoticeError as e:
            self.set_status(400)
            return await self.show(str(e), "danger", form)
        posted = await self.service.post(self.username, notice)
        await self.show(f"Announcement {posted['id']} posted.")


def handlers() -> list[tuple[str, type, dict]]:
    return [
        (r"api/announcements/current", CurrentHandler, {}),
        (r"api/announcements", ListHandler, {}),
        (r"api/announcements/([^/]+)", OneHandler, {}),
        (r"api/audit", AuditHandler, {}),
        (r"/?", AnnouncementsPage, {}),
    ]
