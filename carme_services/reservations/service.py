"""The carme-reservations service: settings, booking (checks, then SLURM), approval, the sync, the hub wiring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from prometheus_client import Gauge
from traitlets import Bool, Dict, Float, List, Unicode, default, validate

from carme_core.roles import ADMIN, POWER, ROLES, USER
from carme_quota.limits import effective_limits
from carme_quota.settings import CarmeQuota
from carme_quota.stored import stored_quota
from carme_slurm import SlurmCommandError, command_env, run_command
from carme_slurm.reservation_argv import (
    RESERVATION_NAME,
    ReservationSpec,
    create_reservation_argv,
    delete_reservation_argv,
    update_reservation_argv,
)

from ..base import CarmeService, PeriodicTask
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from .booking import BookingError, BookingRequest, RoleRules, parse_booking, rules_refusal
from .capacity import Hold, job_holds, nodes_from_view, place, reservation_holds
from .slurm_sync import SyncPlan, slurm_name, sync_plan
from .store import OPEN_STATES, Booking, BookingStore, StoreError, database, now_utc

NAME = "carme-reservations"
READ_SCOPE = "custom:carme-reservations:read"  # a user's own bookings in full (others' as busy blocks)
BOOK_SCOPE = "custom:carme-reservations:book"  # book, edit and cancel one's own
ADMIN_SCOPE = "custom:carme-reservations:admin"  # everyone's: approve, deny, edit, cancel; the sync

DEFAULT_RULES = {
    USER: {"max_hours": 8, "max_gpus": 4, "max_days_ahead": 14, "max_open": 3},
    POWER: {"max_hours": 72, "max_gpus": 8, "max_days_ahead": 60, "max_open": 10},
    ADMIN: {},
}


class ReservationService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "Book GPUs ahead as real SLURM reservations: a calendar, approval, an .ics feed."

    db_url = Unicode("", config=True, help="SQLAlchemy URL of the bookings store; default "
                     "sqlite:///<carme.state_dir>/carme-reservations.sqlite.")
    sync_interval = Float(60.0, config=True, help="Seconds between syncs with SLURM's reservations (one runs at "
                          "start): ended bookings closed, reservations deleted by hand marked gone, Carme-named ones "
                          "without a booking reported.")
    delay = Float(1.0, config=True, help="Seconds before the first sync.")
    name_prefix = Unicode("carme-r", config=True, help="SLURM reservation names Carme gives: <prefix><booking id>-<user>.")
    reserve_gpus_as_tres = Bool(False, config=True, help="Reserve GPUs, not whole nodes: adds TRES=gres/gpu[:TYPE]=N. "
                                "Only for a SLURM that reserves GRES; 22.05 refuses it ('TRES type gres/gpu not "
                                "supported with reservations'), so by default a booking reserves whole nodes.")
    role_rules = Dict(config=True, help="What each role may book: {role: {max_hours, max_gpus, max_days_ahead, "
                      "max_open}} (null or missing: no limit). Default: user 8 h, 4 GPUs, 14 days ahead, 3 open; "
                      "power 72 h, 8 GPUs, 60 days, 10 open; admin none.")
    approval_roles = List(Unicode(), config=True, help="Roles whose bookings wait for an admin's approval (on the "
                          "queue page, or POST api/bookings/ID/decision); only an approved booking becomes a SLURM "
                          "reservation.")
    count_against_quota = Bool(True, config=True, help="Booked GPU-hours (still to come) count against the user's "
                               "GPU-hour budget (CarmeQuota): a booking the budget cannot hold is refused.")
    slurm_flags = List(Unicode(), config=True, help="Extra SLURM flags for every reservation, e.g. [PURGE_COMP].")
    scontrol_timeout = Float(30.0, config=True, help="Seconds an scontrol call may take.")

    aliases = {**CarmeService.aliases, "db-url": "ReservationService.db_url"}

    @default("role_rules")
    def _role_rules_default(self):
        return {role: dict(rules) for role, rules in DEFAULT_RULES.items()}

    @validate("role_rules")
    def _check_rules(self, proposal):
        for role, rules in proposal["value"].items():
            if role not in ROLES:
                raise ValueError(f"role_rules: unknown role {role!r} (roles: {', '.join(ROLES)})")
            RoleRules.from_mapping(role, rules)
        return proposal["value"]

    @validate("approval_roles")
    def _check_approval(self, proposal):
        unknown = sorted(set(proposal["value"]) - set(ROLES))
        if unknown:
            raise ValueError(f"approval_roles: unknown role {', '.join(unknown)} (roles: {', '.join(ROLES)})")
        return proposal["value"]

    @validate("name_prefix")
    def _check_prefix(self, proposal):
        if not RESERVATION_NAME.fullmatch(proposal["value"] + "1") or len(proposal["value"]) > 32:
            raise ValueError("name_prefix: letters, digits, _ . - (at most 32), starting with a letter or digit")
        return proposal["value"]

    def initialize(self, argv=None):
        super().initialize(argv)
        if not self.db_url:
            raise SystemExit(f"{NAME}: db_url is not set (carme: reservations: db_url: in the settings file)")
        self._lock = asyncio.Lock()
        self.last_sync: dict = {"at": None, "unknown": [], "error": None}

    @cached_property
    def store(self) -> BookingStore:
        db = database(self.db_url)
        db.upgrade()
        return BookingStore(db)

    @cached_property
    def quota(self) -> CarmeQuota:
        return CarmeQuota(parent=self)

    @cached_property
    def unknown_gauge(self) -> Gauge:
        return Gauge("carme_reservations_unknown", "Carme-named SLURM reservations without a booking (last sync)",
                     registry=self.metrics.registry)

    def rules(self, role: str) -> RoleRules:
        return RoleRules.from_mapping(role, self.role_rules.get(role) or {})

    def web_handlers(self):
        from .api import handlers
        from .pages import page_handlers

        return [*handlers(), *page_handlers()]

    def periodic_tasks(self):
        return [PeriodicTask("sync", self.sync_interval, self.sync, self.delay)]

    # ---- reading: the store and the hub's one view ---------------------------------------------------

    async def in_store(self, method, *args, **kwargs):
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except StoreError as e:
            text = str(e)
            raise BookingError("booking", text, 404 if "unknown" in text else 409) from None

    async def cluster(self) -> dict:
        """The view's nodes, reservations and jobs (one read each)."""
        hub = self.hub_client()
        nodes, reservations, jobs = await asyncio.gather(hub.slurm("nodes"), hub.slurm("reservations"),
                                                         hub.slurm("jobs"))
        return {"nodes": nodes, "reservations": reservations, "jobs": jobs}

    @staticmethod
    def gpu_types(view: dict) -> set[str]:
        return {g["type"] for n in view["nodes"]["nodes"] for g in n.get("gpus") or () if g["type"]}

    @staticmethod
    def partitions(view: dict) -> set[str]:
        return {p for n in view["nodes"]["nodes"] for p in n.get("partitions") or ()}

    async def holds(self, view: dict, request: BookingRequest, leave_out: int | None = None) -> list[Hold]:
        """What already holds nodes in the request's window: open bookings (but `leave_out`), SLURM's
        reservations that are not an open booking's, running jobs."""
        open_bookings = await self.in_store(self.store.bookings, OPEN_STATES)
        mine = {b.slurm_name for b in open_bookings if b.slurm_name}
        holds = [Hold(b.start, b.end, b.nodes, "a booking", {n: {b.gpu_type: b.gpus} for n in b.nodes[:1]}, b.id)
                 for b in open_bookings if b.id != leave_out and b.start < request.end and request.start < b.end]
        holds += reservation_holds(view["reservations"]["reservations"], skip=mine)
        holds += job_holds(view["jobs"]["jobs"], request.start, inside=mine)  # a booking's own jobs are its hold
        return holds

    async def placement(self, view: dict, request: BookingRequest, leave_out: int | None = None,
                        keep: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The nodes for `request`; with `keep` (an active booking's nodes, its servers run there) only those."""
        nodes = nodes_from_view(view["nodes"]["nodes"])
        if keep:
            nodes = [n for n in nodes if n.name in keep]
        placed = place(request, nodes, await self.holds(view, request, leave_out),
                       whole_nodes=not self.reserve_gpus_as_tres)
        if self.reserve_gpus_as_tres and len(placed) > 1:  # GPUs are counted per node: one node per booking
            raise BookingError("gpus", f"{request.gpus} GPUs do not fit on one node: book them as several bookings")
        return placed

    async def quota_refusal(self, user: str, role: str, request: BookingRequest,
                            others: list[Booking]) -> BookingError | None:
        """Booked GPU-hours still to come (of `others`, the user's other open bookings), the period's use
        and this booking against the user's budget."""
        if not self.count_against_quota:
            return None
        override = (await stored_quota(self.quota.db_url, user, None, self.log)).override
        budget = effective_limits(self.quota.role_default(role), None, override).gpu_hours
        if budget is None:
            return None
        usage = (await self.hub_client().slurm("usage"))["usage"]
        used = sum(u["gpu_minutes_used"] + u["gpu_minutes_running"] for u in usage if u["user"] == user
                   and (not self.quota.account or u["account"] == self.quota.account)) / 60
        now = now_utc()
        booked = sum(b.gpus * max(0.0, (b.end - max(b.start, now)).total_seconds()) / 3600 for b in others)
        if used + booked + request.gpu_hours > budget + 1e-9:
            return BookingError("gpus", f"this booking is {request.gpu_hours:g} GPU-hours; with {used:.1f} used this "
                                f"period and {booked:.1f} booked, it would pass your budget of {budget:g} GPU-hours",
                                403)
        return None

    # ---- changes: store and SLURM together ----------------------------------------------------------

    def spec(self, booking: Booking, name: str) -> ReservationSpec:
        return ReservationSpec(name=name, users=(booking.user,), start=int(booking.start.timestamp()),
                               end=int(booking.end.timestamp()), nodes=booking.nodes, gpus=booking.gpus,
                               gpu_type=booking.gpu_type, gpus_as_tres=self.reserve_gpus_as_tres,
                               flags=tuple(self.slurm_flags))

    async def scontrol(self, make_argv) -> None:
        try:
            argv = make_argv()
        except ValueError as e:  # a value SLURM could not take (a user name with '@', say)
            raise BookingError("user" if str(e).startswith("user") else "booking", str(e)) from None
        self.log.info("running %s", " ".join(argv))
        try:
            await run_command(argv, env=command_env(), timeout=self.scontrol_timeout)
        except SlurmCommandError as e:
            raise BookingError("start", f"SLURM refused the reservation: {e}", 409) from None

    async def into_slurm(self, booking: Booking, actor: str, action: str, **changes) -> Booking:
        """Create the booking's SLURM reservation and save it approved. Its name is saved first: if
        scontrol fails after SLURM made it (a time-out), the sync finds it by name and deletes it."""
        name = slurm_name(self.name_prefix, booking.id, booking.user)
        booking = await self.in_store(self.store.update, booking, actor, "naming", name, slurm_name=name)
        try:
            await self.scontrol(lambda: create_reservation_argv(self.spec(replace(booking, **changes), name)))
        except BookingError:
            with contextlib.suppress(BookingError):  # SLURM may have made it before failing to say so
                await self.delete_in_slurm(name)
            raise
        return await self.in_store(self.store.update, booking, actor, action, f"SLURM reservation {name}",
                                   in_slurm_at=now_utc(), **changes)

    async def book(self, user: str, role: str, body: dict, actor: str) -> Booking:
        async with self._lock:
            view, now = await self.cluster(), now_utc()
            request = parse_booking(body, now, self.gpu_types(view), self.partitions(view))
            others = await self.in_store(self.store.bookings, OPEN_STATES, user)
            refusal = rules_refusal(request, self.rules(role), role, len(others), now) or \
                await self.quota_refusal(user, role, request, others)
            if refusal is not None:
                raise refusal
            nodes = await self.placement(view, request)
            approval = role in self.approval_roles
            booking = await self.in_store(self.store.add, user, request, nodes, "pending", actor)
            if approval:
                self.log.info("booking %d of %s waits for approval", booking.id, user)
                return booking
            try:
                return await self.into_slurm(booking, actor, "approved", state="approved", decided_at=now_utc(),
                                             decided_by=actor)
            except BookingError as e:  # nothing stays booked (the row keeps the name the sync cleans up by)
                current = await self.in_store(self.store.get, booking.id)
                await self.in_store(self.store.update, current, actor, "failed", e.message, state="cancelled",
                                    note=e.message)
                raise

    async def decide(self, booking_id: int, approve: bool, actor: str, note: str = "") -> Booking:
        async with self._lock:
            booking = await self.in_store(self.store.get, booking_id)
            if booking.state != "pending":
                raise BookingError("booking", f"booking {booking_id} is {booking.state}, not pending", 409)
            if not approve:
                return await self.in_store(self.store.update, booking, actor, "denied", note, state="denied",
                                           decided_at=now_utc(), decided_by=actor, note=note)
            view, now = await self.cluster(), now_utc()
            if booking.end <= now:
                raise BookingError("end", f"booking {booking_id} ended before it was approved", 409)
            start = max(booking.start, now)
            request = replace(booking.request, start=start)
            nodes = await self.placement(view, request, leave_out=booking.id)
            return await self.into_slurm(booking, actor, "approved", state="approved", start=start, nodes=nodes,
                                         decided_at=now_utc(), decided_by=actor, note=note)

    async def cancel(self, booking_id: int, actor: str) -> Booking:
        async with self._lock:
            booking = await self.in_store(self.store.get, booking_id)
            if booking.state not in OPEN_STATES:
                raise BookingError("booking", f"booking {booking_id} is {booking.state}: nothing to cancel", 409)
            if booking.state == "approved" and booking.slurm_name:
                await self.delete_in_slurm(booking.slurm_name)
            return await self.in_store(self.store.update, booking, actor, "cancelled", "", state="cancelled")

    async def delete_in_slurm(self, name: str) -> None:
        try:
            await run_command(delete_reservation_argv(name), env=command_env(), timeout=self.scontrol_timeout)
        except SlurmCommandError as e:
            if "invalid" not in str(e).lower():  # "Requested reservation is invalid": it is gone already
                raise BookingError("booking", f"SLURM did not delete reservation {name}: {e}", 502) from None

    async def edit(self, booking_id: int, body: dict, role: str, actor: str) -> Booking:
        """Change a booking. Only what changed reaches SLURM (`scontrol update`; a started reservation
        keeps its start and its nodes, where its servers run). For a role that needs approval, a change
        of window or GPUs sends an approved booking back to pending (its SLURM reservation goes)."""
        async with self._lock:
            booking = await self.in_store(self.store.get, booking_id)
            if booking.state not in OPEN_STATES:
                raise BookingError("booking", f"booking {booking_id} is {booking.state}: it cannot change", 409)
            view, now = await self.cluster(), now_utc()
            request = parse_booking(body, now, self.gpu_types(view), self.partitions(view), base=booking.request)
            started = booking.state == "approved" and booking.start <= now
            if started and request.start != booking.start:
                raise BookingError("start", "the booking has begun: its start cannot move (end it earlier or cancel it)")
            others = [b for b in await self.in_store(self.store.bookings, OPEN_STATES, booking.user) if b.id != booking.id]
            refusal = rules_refusal(request, self.rules(role), role, len(others), now) or \
                await self.quota_refusal(booking.user, role, request, others)
            if refusal is not None:
                raise refusal
            what = {"start": request.start, "end": request.end, "gpus": request.gpus, "gpu_type": request.gpu_type,
                    "partition": request.partition}
            moved = {k for k, v in what.items() if getattr(booking, k) != v}
            nodes = booking.nodes
            if moved:
                nodes = await self.placement(view, request, leave_out=booking.id, keep=booking.nodes if started else ())
            changes = dict(what, title=request.title, nodes=nodes)
            detail = f"{request.start.isoformat()} .. {request.end.isoformat()}, {request.gpus} GPUs"
            if booking.state == "approved" and moved and role in self.approval_roles:
                if booking.slurm_name:
                    await self.delete_in_slurm(booking.slurm_name)
                return await self.in_store(self.store.update, booking, actor, "edited", detail + ": waits for approval",
                                           state="pending", slurm_name=None, in_slurm_at=None, decided_at=None,
                                           decided_by=None, note="changed: waits for an admin's approval again",
                                           **changes)
            if booking.state == "approved" and booking.slurm_name and (moved or nodes != booking.nodes):
                new = replace(booking, **changes)
                fields = {"end", "users"} | ({"start"} if "start" in moved else set()) | (
                    {"nodes"} if nodes != booking.nodes else set()) | ({"gpus"} if {"gpus", "gpu_type"} & moved else set())
                await self.scontrol(lambda: update_reservation_argv(self.spec(new, booking.slurm_name), fields))
                changes["in_slurm_at"] = now_utc()
            return await self.in_store(self.store.update, booking, actor, "edited", detail, **changes)

    # ---- the sync with SLURM's reservations -----------------------------------------------------------

    async def sync(self) -> dict:
        began = time.time()
        try:
            async with self._lock:
                result = await self._sync()
        except Exception as e:  # noqa: BLE001 - reported; the next sync tries again
            self.log.warning("sync failed: %s: %s", type(e).__name__, e)
            result = {**self.last_sync, "error": str(e), "error_at": began}
        self.last_sync = {**result, "took_s": round(time.time() - began, 3)}
        return self.last_sync

    async def _sync(self) -> dict:
        document = await self.hub_client().slurm("reservations")
        names = [r["name"] for r in document["reservations"]]
        snapshot = document["snapshot"]
        snapshot_at = snapshot.get("last_snapshot") if snapshot.get("slurm_answering") else None
        bookings = await self.in_store(self.store.bookings, OPEN_STATES)
        bookings += await self.in_store(self.store.by_slurm_names, names)
        now = now_utc()
        plan = sync_plan({b.id: b for b in bookings}.values(), names, snapshot_at, now, self.name_prefix)
        await self.apply(plan)
        self.unknown_gauge.set(len(plan.unknown))
        for name in plan.unknown:
            self.log.warning("SLURM reservation %s is named like Carme's but no booking has it (left alone)", name)
        return {"at": time.time(), "error": None, "ended": [b.id for b in plan.ended],
                "gone": [b.id for b in plan.gone], "expired": [b.id for b in plan.expired],
                "deleted": list(plan.delete), "unknown": list(plan.unknown)}

    async def apply(self, plan: SyncPlan) -> None:
        for b in plan.ended:
            await self.in_store(self.store.update, b, NAME, "ended", "", state="ended")
        for b in plan.gone:
            self.log.warning("booking %d: SLURM reservation %s was deleted outside Carme: marked gone", b.id, b.slurm_name)
            await self.in_store(self.store.update, b, NAME, "gone", f"{b.slurm_name} is no longer in SLURM",
                                state="gone", note=f"SLURM reservation {b.slurm_name} was deleted outside Carme")
        for b in plan.expired:
            await self.in_store(self.store.update, b, NAME, "ended", "not decided before its end", state="ended",
                                note="not approved before its end")
        for name in plan.delete:
            self.log.warning("SLURM reservation %s belongs to a closed booking: deleting it", name)
            try:
                await self.delete_in_slurm(name)
            except BookingError as e:
                self.log.warning("%s", e)


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(ReservationService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-reservations.sqlite")
    return {
        "service": service_spec(ReservationService, settings, values,
                                url=values.get("url", "http://127.0.0.1:10104"),
                                allowed_scopes=[READ_SCOPE, BOOK_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            READ_SCOPE: {"description": "Read a user's GPU bookings in full (others' as busy blocks)."},
            BOOK_SCOPE: {"description": "Book GPUs ahead for a user; edit and cancel their bookings."},
            ADMIN_SCOPE: {"description": "Approve, deny, edit and cancel every GPU booking; sync with SLURM."},
        },
        "roles": [
            own_role(NAME, ["read:users"], "carme-reservations reads users' roles and the SLURM view (nodes, reservations, "
                     "jobs, usage)."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE, BOOK_SCOPE],
                        "The hub's admins decide, edit and cancel every booking."),
        ],
        "user_scopes": [f"{READ_SCOPE}!user", f"{BOOK_SCOPE}!user", f"access:services!service={NAME}"],
        # the spawn form links to the booking page
        "config": {"CarmeSpawner": {"booking_url": f"services/{NAME}/"}},
    }


if __name__ == "__main__":
    ReservationService.launch_instance()
