"""carme-reservations' pages in the hub's look: the week calendar with the booking form, and the
admins' approval queue.

They show what the API serves and change things through the same service calls. Times travel
in UTC; the page's script draws them in the browser's time zone and sends that zone's name
with the form, so a local time is read where the user is (a DST gap is refused, naming the field).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

from tornado import web

from .api import ClusterHandler, booking_id
from .booking import BookingError
from .capacity import CapacityConflict
from .service import BOOK_SCOPE, READ_SCOPE
from .store import OPEN_STATES, now_utc

FORM_FIELDS = ("start", "end", "gpus", "gpu_type", "partition", "title", "timezone")


def week_start(text: str, today: date) -> date:
    """The Monday of the week holding `text` (YYYY-MM-DD), else of today's."""
    try:
        day = date.fromisoformat(text) if text else today
    except ValueError:
        raise web.HTTPError(400, f"week: {text[:20]!r} is not a date like 2027-03-22") from None
    return day - timedelta(days=day.weekday())


class CalendarPage(ClusterHandler):
    @web.authenticated
    async def get(self, notice: str = "", kind: str = "success", error: BookingError | None = None,
                  form: dict | None = None):
        now = now_utc()
        monday = week_start(self.get_argument("week", ""), now.date())
        first = datetime.combine(monday, time(), timezone.utc)
        listed = await self.listed(first - timedelta(days=1), first + timedelta(days=8), open_only=True)
        mine = [b for b in await self.service.in_store(self.store.bookings, OPEN_STATES, self.username)
                if b.end > now]
        cluster = await self.cluster_summary()
        rules = self.service.rules(self.role)
        self.finish(self.render_page(
            "reservations_calendar.html", notice=notice, notice_kind=kind, error=error,
            conflicts=[h.to_dict() for h in error.conflicts] if isinstance(error, CapacityConflict) else [],
            form=form or {}, week=monday.isoformat(), previous_week=(monday - timedelta(days=7)).isoformat(),
            next_week=(monday + timedelta(days=7)).isoformat(), bookings_json=json.dumps(listed),
            mine=mine, cluster=cluster, rules=rules, approval=self.role in self.service.approval_roles,
            is_admin=self.is_admin(), has_feed=await self.service.in_store(self.store.has_feed_token, self.username),
            feed_url=""))

    @web.authenticated
    async def post(self):
        action = self.get_body_argument("action", "book")
        self.require(self.may(READ_SCOPE if action == "feed" else BOOK_SCOPE, self.username),
                     f"this needs {READ_SCOPE if action == 'feed' else BOOK_SCOPE} for yourself")
        try:
            if action == "book":
                form = {f: self.get_body_argument(f, "").strip() for f in FORM_FIELDS}
                body = {k: v for k, v in form.items() if v or k in ("start", "end", "gpus")}
                try:
                    booking = await self.service.book(self.username, self.role, body, self.username)
                except BookingError as e:
                    self.set_status(e.status)
                    await self.get(str(e), "danger", e, form)
                    return
                await self.get(f"Booked {booking.gpus} GPU{'s' if booking.gpus != 1 else ''}: "
                               + (f"SLURM reservation {booking.slurm_name} on {', '.join(booking.nodes)}."
                                  if booking.state == "approved" else "it waits for an admin's approval."))
            elif action == "cancel":
                booking = await self.owned(self.get_body_argument("booking", ""), BOOK_SCOPE)
                await self.service.cancel(booking.id, self.username)
                await self.get(f"Cancelled booking {booking.id}.")
            elif action == "feed":
                token = await self.service.in_store(self.store.new_feed_token, self.username)
                await self.get_with_feed(token)
            else:
                raise web.HTTPError(400, "action: must be book, cancel or feed")
        except BookingError as e:
            self.set_status(e.status)
            await self.get(str(e), "danger", e)

    async def get_with_feed(self, token: str) -> None:
        url = self.feed_url(self.username, token)
        await self.get("Your calendar feed (keep the address secret; a new one replaces it): " + url, "info")


class QueuePage(ClusterHandler):
    @web.authenticated
    async def get(self, notice: str = "", kind: str = "success"):
        self.require(self.is_admin(), "the approval queue is for the hub's admins")
        pending = await self.service.in_store(self.store.bookings, ("pending",))
        now = now_utc()
        recent = await self.service.in_store(self.store.bookings, ("gone",), None,
                                             (now - timedelta(days=7), now + timedelta(days=400)))
        last = self.service.last_sync
        sync_text = (f"last at {datetime.fromtimestamp(last['at'], timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
                     if last.get("at") else "not yet")
        self.finish(self.render_page("reservations_queue.html", pending=pending, gone=recent, notice=notice,
                                     notice_kind=kind, last_sync=last, sync_text=sync_text))

    @web.authenticated
    async def post(self):
        self.require(self.is_admin(), "the approval queue is for the hub's admins")
        action = self.get_body_argument("action", "")
        if action not in ("approve", "deny"):
            raise web.HTTPError(400, "action: must be approve or deny")
        number = booking_id(self.get_body_argument("booking", ""))
        try:
            booking = await self.service.decide(number, action == "approve", self.username,
                                                self.get_body_argument("note", "").strip()[:500])
        except BookingError as e:
            self.set_status(e.status)
            await self.get(str(e), "danger")
            return
        await self.get(f"Booking {booking.id} of {booking.user} {booking.state}"
                       + (f": SLURM reservation {booking.slurm_name}." if booking.slurm_name else "."))


def page_handlers() -> list[tuple[str, type, dict]]:
    return [(r"/?", CalendarPage, {}), (r"queue", QueuePage, {})]
