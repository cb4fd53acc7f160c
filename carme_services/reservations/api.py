"""carme-reservations' REST API (JSON under <prefix>api/) and the .ics feed:

    GET    api/bookings[?start=&end=][&mine=1]  bookings overlapping the window (default: from a day ago
                                                to 5 weeks ahead): one's own in full, others' as busy blocks  read
    POST   api/bookings                {start, end, gpus, gpu_type?, partition?, timezone?, title?, user?}  book
    GET    api/bookings/ID             one booking in full, with its events                owner (read) | admin
    PATCH  api/bookings/ID             change {start?, end?, gpus?, gpu_type?, partition?, title?, timezone?}
    DELETE api/bookings/ID             cancel (its SLURM reservation is deleted)           owner (book) | admin
    POST   api/bookings/ID/decision    {approve: true|false, note?}                        admin
    GET    api/cluster                 the GPUs bookable: nodes, types, partitions          any user
    POST   api/feed-token              a new secret for one's .ics feed (the old one stops working): {url}
    GET    api/sync | POST api/sync    the last sync with SLURM / one now                   admin
    GET    feed/NAME.ics?token=T       NAME's bookings as iCalendar, for calendar apps (the token, no login)

Scopes are checked with JupyterHub's check_scopes: `custom:carme-reservations:read!user=NAME`
reads NAME's, `...:book!user=NAME` books for NAME, `...:admin` does everything. Times are ISO
8601, UTC in answers. A refusal is JSON {status, message, field}: 400 bad input (the field
named), 403 a rule of the role or the budget, 404 unknown, 409 a conflict (with `conflicts`:
the windows that take the GPUs) or a state that does not allow it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from tornado import web
from tornado.httpclient import HTTPClientError

from carme_core.roles import role_of_model

from ..base import CarmeServiceHandler
from .booking import BookingError, parse_time
from .capacity import CapacityConflict, nodes_from_view
from .ics import calendar
from .service import ADMIN_SCOPE, BOOK_SCOPE, READ_SCOPE
from .store import OPEN_STATES, Booking, now_utc

DEFAULT_BEFORE = timedelta(days=1)
DEFAULT_AHEAD = timedelta(days=35)
MAX_WINDOW = timedelta(days=400)


def booking_id(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", text):
        raise web.HTTPError(404, f"no booking {text[:40]}")
    return int(text)


class ReservationHandler(CarmeServiceHandler):
    @property
    def store(self):
        return self.service.store

    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def may(self, scope: str, user: str) -> bool:
        return self.is_admin() or self.has_scope(scope, user=user)

    def refuse(self, e: BookingError) -> None:
        body = {"status": e.status, "message": str(e), "field": e.field}
        if isinstance(e, CapacityConflict):
            body["conflicts"] = [h.to_dict() for h in e.conflicts]
        self.write_json(body, e.status)

    async def run(self, make, status: int = 200):
        """Answer with what `make()` returns (a Booking or a dict), or the refusal it raises."""
        try:
            result = await make()
        except BookingError as e:
            self.refuse(e)
            return None
        self.write_json({"booking": result.to_dict()} if isinstance(result, Booking) else result, status)
        return result

    async def hub_user(self, name: str) -> dict:
        if name == self.username:
            return self.current_user
        try:
            return await self.service.hub_client().get(f"users/{quote(name, safe='')}")
        except HTTPClientError as e:
            if e.code == 404:
                raise web.HTTPError(404, f"no hub user {name}") from None
            raise

    async def role_of(self, name: str) -> str:
        return role_of_model(await self.hub_user(name), self.service.power_groups)

    async def owned(self, text: str, scope: str) -> Booking:
        """The booking, if the caller may use `scope` on its owner's bookings (404 otherwise, as for
        a booking that does not exist: others' ids tell nothing)."""
        try:
            booking = await self.service.in_store(self.store.get, booking_id(text))
        except BookingError:
            raise web.HTTPError(404, f"no booking {text} of yours") from None
        if not self.may(scope, booking.user):
            raise web.HTTPError(404, f"no booking {text} of yours")
        return booking

    def feed_url(self, user: str, token: str) -> str:
        """The feed's public address: as the browser reached the hub (the proxy's X-Forwarded-*)."""
        proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol).split(",")[0].strip()
        host = self.request.headers.get("X-Forwarded-Host", self.request.host).split(",")[0].strip()
        base = f"{proto if proto in ('http', 'https') else 'https'}://{host}"
        return f"{base}{self.service.service_prefix}feed/{quote(user, safe='')}.ics?token={quote(token, safe='')}"

    def window(self) -> tuple[datetime, datetime]:
        now = now_utc()
        try:
            start = parse_time("start", self.get_argument("start")) if self.get_argument("start", "") else now - DEFAULT_BEFORE
            end = parse_time("end", self.get_argument("end")) if self.get_argument("end", "") else now + DEFAULT_AHEAD
        except BookingError as e:
            raise web.HTTPError(400, str(e)) from None
        if end <= start or end - start > MAX_WINDOW:
            raise web.HTTPError(400, f"end: must be after start, at most {MAX_WINDOW.days} days later")
        return start, end

    async def listed(self, start: datetime, end: datetime, mine: bool = False, open_only: bool = False) -> list[dict]:
        """Bookings overlapping the window: those the caller may read in full, the others' open ones as busy."""
        bookings = await self.service.in_store(self.store.bookings, OPEN_STATES if open_only else None,
                                               self.username if mine else None, (start, end))
        shown = []
        for b in bookings:
            if self.may(READ_SCOPE, b.user):
                shown.append({**b.to_dict(), "mine": b.user == self.username})
            elif b.is_open:
                shown.append(b.busy_dict())
        return shown


class BookingsHandler(ReservationHandler):
    @web.authenticated
    async def get(self):
        start, end = self.window()
        mine = self.get_argument("mine", "0").lower() in ("1", "true", "yes")
        self.write_json({"start": start.isoformat(), "end": end.isoformat(),
                         "bookings": await self.listed(start, end, mine)})

    @web.authenticated
    async def post(self):
        body = self.json_body()
        user = body.pop("user", None) or self.username
        if not isinstance(user, str):
            raise web.HTTPError(400, "user: must be a user name")
        self.require(self.may(BOOK_SCOPE, user), f"you may book for yourself only ({BOOK_SCOPE}!user={user} is needed)")
        role = await self.role_of(user)
        await self.run(lambda: self.service.book(user, role, body, self.username), 201)


class BookingHandler(ReservationHandler):
    @web.authenticated
    async def get(self, text: str):
        booking = await self.owned(text, READ_SCOPE)
        events = await self.service.in_store(self.store.events, booking.id)
        self.write_json({"booking": booking.to_dict(), "events": events})

    @web.authenticated
    async def patch(self, text: str):
        booking = await self.owned(text, BOOK_SCOPE)
        role = await self.role_of(booking.user)
        await self.run(lambda: self.service.edit(booking.id, self.json_body(), role, self.username))

    @web.authenticated
    async def delete(self, text: str):
        booking = await self.owned(text, BOOK_SCOPE)
        await self.run(lambda: self.service.cancel(booking.id, self.username))


class DecisionHandler(ReservationHandler):
    @web.authenticated
    async def post(self, text: str):
        self.require(self.is_admin(), f"deciding bookings needs {ADMIN_SCOPE} (the hub's admins)")
        body = self.json_body()
        approve, note = body.get("approve"), body.get("note") or ""
        if not isinstance(approve, bool):
            raise web.HTTPError(400, "approve: must be true or false")
        if not isinstance(note, str) or len(note) > 500:
            raise web.HTTPError(400, "note: at most 500 characters")
        await self.run(lambda: self.service.decide(booking_id(text), approve, self.username, note.strip()))


class ClusterHandler(ReservationHandler):
    @web.authenticated
    async def get(self):
        self.write_json(await self.cluster_summary())

    async def cluster_summary(self) -> dict:
        document = await self.service.hub_client().slurm("nodes")
        nodes = nodes_from_view(document["nodes"])
        return {"snapshot": document["snapshot"],
                "gpu_types": {t: c["total"] for t, c in sorted(document["gpus"].items())},  # the view counts them
                "partitions": sorted({p for n in nodes for p in n.partitions}),
                "nodes": [{"name": n.name, "partitions": list(n.partitions), "gpus": dict(n.gpus), "usable": n.usable,
                           "state": n.state} for n in nodes],
                "whole_nodes": not self.service.reserve_gpus_as_tres}


class FeedTokenHandler(ReservationHandler):
    @web.authenticated
    async def post(self):
        self.require(self.may(READ_SCOPE, self.username), "reading your bookings needs " + READ_SCOPE)
        token = await self.service.in_store(self.store.new_feed_token, self.username)
        self.write_json({"url": self.feed_url(self.username, token)}, 201)


class SyncHandler(ReservationHandler):
    @web.authenticated
    def get(self):
        self.require(self.is_admin(), f"the sync needs {ADMIN_SCOPE}")
        self.write_json(self.service.last_sync)

    @web.authenticated
    async def post(self):
        self.require(self.is_admin(), f"the sync needs {ADMIN_SCOPE}")
        self.write_json(await self.service.sync())


class FeedHandler(web.RequestHandler):
    """NAME's bookings as iCalendar: the feed token is the only credential (calendar apps cannot log in)."""

    @property
    def service(self):
        return self.settings["carme_service"]

    async def get(self, name: str):
        store = self.service.store
        if not await self.service.in_store(store.feed_user, name, self.get_argument("token", "")):
            raise web.HTTPError(404)
        now = now_utc()
        bookings = await self.service.in_store(store.bookings, None, name, (now - timedelta(days=30),
                                                                             now + timedelta(days=400)))
        self.set_header("Content-Type", "text/calendar; charset=utf-8")
        self.set_header("Cache-Control", "private, max-age=60")
        self.finish(calendar(bookings, self.request.host.split(":")[0] or "carme", datetime.now(timezone.utc),
                             f"Carme GPU bookings of {name}"))

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": "no such feed (a wrong or an old token)"}))


def handlers() -> list[tuple[str, type, dict]]:
    number = r"([^/]+)"
    return [
        (r"api/bookings", BookingsHandler, {}),
        (rf"api/bookings/{number}", BookingHandler, {}),
        (rf"api/bookings/{number}/decision", DecisionHandler, {}),
        (r"api/cluster", ClusterHandler, {}),
        (r"api/feed-token", FeedTokenHandler, {}),
        (r"api/sync", SyncHandler, {}),
        (r"feed/([^/]+)\.ics", FeedHandler, {}),
    ]
