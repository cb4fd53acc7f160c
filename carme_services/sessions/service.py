"""The carme-sessions service: session cards, the history, Extend and Relaunch.

It reads the hub (each user's servers with their options and state) and the hub's ONE view of
SLURM (jobs, accounting, usage, reservations); it never asks SLURM what it is doing. It changes
SLURM in one way only: an admitted Extend runs `scontrol update JobId=J TimeLimit=N` as root
(`carme_slurm.commands.set_time_limit`). Relaunch and Stop go through the hub's own REST API, so a
relaunch passes the same option check and quota admission as any spawn. Its store keeps, per job
id, the user's choices SLURM does not know (the image, ...), and the extensions' audit.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from prometheus_client import Counter
from tornado.httpclient import HTTPClientError
from traitlets import Dict, Float, Integer, List, TraitError, Unicode, validate

from carme_core.roles import role_of_model
from carme_quota.admission import user_usage
from carme_quota.limits import effective_limits
from carme_quota.settings import CarmeQuota
from carme_quota.stored import stored_quota
from carme_slurm import SlurmCommandError, SlurmJob
from carme_slurm.accounting import AccountedJob, AssociationUsage
from carme_slurm.commands import set_time_limit

from ..base import CarmeService, PeriodicTask
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from .cards import SessionServer, card, server_path, servers_of, session_job_id
from .errors import SessionError
from .extend import Refused, current_limit, extension_refusal
from .history import RelaunchError, choices_seen, history, relaunch_options
from .store import SessionStore, database

NAME = "carme-sessions"
READ_SCOPE = "custom:carme-sessions:read"  # a user's own sessions: cards, history, Extend, Relaunch, Stop
ADMIN_SCOPE = "custom:carme-sessions:admin"  # everyone's, and the whole audit


class SessionsService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "Session cards, history, Extend and Relaunch of users' servers."

    db_url = Unicode("", config=True, help="SQLAlchemy URL of the sessions store (the choices SLURM does not "
                     "know, the extensions' audit); default sqlite:///<carme.state_dir>/carme-sessions.sqlite.")
    interval = Float(15.0, config=True, help="Seconds between passes that remember the options of every running "
                     "server's job (for the history's image and Relaunch).")
    delay = Float(2.0, config=True, help="Seconds before the first pass.")
    keep_days = Float(62.0, config=True, help="Days the options of a job are kept (the history shows the view's "
                      "sacct window, SlurmView.accounting_window_days).")
    ending_soon_minutes = Float(15.0, config=True, help="A running session within this many minutes of its time "
                                "limit is shown as 'ending soon'.")
    warn_minutes = List(Float(), [15.0, 5.0], config=True, help="Minutes before a running session's time limit at "
                        "which its user is warned (inside JupyterLab, by the Carme lab extension, and on the "
                        "sessions page), with Extend where allowed.")
    poll_seconds = Float(5.0, config=True, help="Seconds between the page's reads of the API (it updates without "
                         "reload; the time remaining counts down every second).")
    history_size = Integer(50, config=True, help="Sessions the history shows at most (newest first).")
    extend_max_minutes = Integer(480, config=True, help="The most minutes one Extend may add.")
    extend_choices = List(Integer(), [15, 30, 60], config=True, help="The +minutes the page offers for Extend.")
    partition_max_minutes = Dict(value_trait=Integer(), config=True, help="{queue: minutes}: the longest a server in "
                                 "that SLURM partition may run after Extend (SLURM lets root pass a partition's "
                                 "MaxTime, so Carme checks it). Use the same as CarmeSpawner.partitions' "
                                 "max_runtime_minutes; a queue not named has no such bound.")
    scontrol_timeout = Float(30.0, config=True, help="Seconds an scontrol update may take.")

    aliases = {**CarmeService.aliases, "db-url": "SessionsService.db_url"}

    @validate("interval", "keep_days", "poll_seconds", "scontrol_timeout")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"SessionsService.{proposal.trait.name} must be > 0, not {proposal.value}")
        return proposal.value

    @validate("ending_soon_minutes")
    def _check_soon(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"SessionsService.ending_soon_minutes must be >= 0, not {proposal.value}")
        return proposal.value

    @validate("history_size", "extend_max_minutes")
    def _check_count(self, proposal):
        if not 1 <= proposal.value <= 366 * 24 * 60:
            raise TraitError(f"SessionsService.{proposal.trait.name} must be from 1 to {366 * 24 * 60}")
        return proposal.value

    @validate("warn_minutes")
    def _check_warn(self, proposal):
        if any(not 0 < m <= 24 * 60 for m in proposal.value):
            raise TraitError("SessionsService.warn_minutes: each must be > 0 and at most 1440 minutes")
        return sorted(set(proposal.value), reverse=True)

    @validate("extend_choices", "partition_max_minutes")
    def _check_minutes(self, proposal):
        values = proposal.value.values() if isinstance(proposal.value, dict) else proposal.value
        if any(v < 1 for v in values):
            raise TraitError(f"SessionsService.{proposal.trait.name}: minutes must be at least 1")
        return proposal.value

    def initialize(self, argv=None):
        super().initialize(argv)
        if not self.db_url:
            raise SystemExit(f"{NAME}: db_url is not set (carme: sessions: db_url: in the settings file)")
        self.locks: dict[str, asyncio.Lock] = {}
        self.limits_set: dict[str, tuple[int, float]] = {}  # job id -> (the limit this service set, when)
        self.last_pass: dict = {"at": None, "remembered": 0, "error": None}

    @cached_property
    def store(self) -> SessionStore:
        db = database(self.db_url)
        db.upgrade()
        return SessionStore(db)

    @cached_property
    def quota(self) -> CarmeQuota:
        return CarmeQuota(parent=self)

    @cached_property
    def counters(self) -> dict:
        registry = self.metrics.registry
        return {"extensions": Counter("carme_sessions_extensions", "Extends asked for, by outcome", ["outcome"],
                                      registry=registry),
                "relaunches": Counter("carme_sessions_relaunches", "Servers relaunched", registry=registry),
                "stops": Counter("carme_sessions_stops", "Servers stopped from the sessions page", registry=registry)}

    def web_handlers(self):
        from .handlers import handlers

        return handlers()

    def periodic_tasks(self):
        return [PeriodicTask("remember", self.interval, self.remember_pass, self.delay)]

    # ---- reading ---------------------------------------------------------------------------------

    async def in_store(self, method, *args, **kwargs):
        return await asyncio.to_thread(method, *args, **kwargs)

    async def hub_user(self, name: str) -> dict:
        """The hub's model of `name`, stopped servers included; SessionError(404) for no such user."""
        try:
            return await self.hub_client().get(f"users/{quote(name, safe='')}", include_stopped_servers="1")
        except HTTPClientError as e:
            if e.code == 404:
                raise SessionError(404, f"no hub user {name}") from None
            raise

    async def slurm(self, *kinds: str) -> dict:
        """The view's documents; a kind the hub does not read (accounting off) is None."""
        async def one(kind):
            try:
                return await self.hub_client().slurm(kind)
            except HTTPClientError as e:
                if e.code == 404:
                    return None
                raise
        return dict(zip(kinds, await asyncio.gather(*(one(k) for k in kinds)), strict=True))

    async def remember(self, servers: list[SessionServer]) -> int:
        return await self.in_store(self.store.remember, choices_seen(servers, time.time()))

    async def remember_pass(self) -> dict:
        """Remember the options of every running server's job; forget those older than keep_days."""
        try:
            users = await self.hub_client().get_all("users", state="active")
            servers = [s for u in users for s in servers_of(u)]
            new = await self.remember(servers)
            await self.in_store(self.store.forget_older_than, self.keep_days)
        except Exception as e:  # noqa: BLE001 - reported; the next pass tries again
            self.log.warning("remember pass failed: %s: %s", type(e).__name__, e)
            self.last_pass = {**self.last_pass, "error": str(e), "error_at": time.time()}
            return self.last_pass
        self.last_pass = {"at": time.time(), "servers": len(servers), "remembered": new, "error": None}
        return self.last_pass

    async def sessions(self, model: dict) -> dict:
        """The cards of the user of `model` (the hub's user model, stopped servers included)."""
        user, now = model["name"], time.time()
        servers = servers_of(model)
        await self.remember(servers)
        docs = await self.slurm("jobs", "recent_jobs")
        prefix = docs["jobs"]["job_name_prefix"]
        snapshot = float(docs["jobs"]["snapshot"].get("last_snapshot") or 0)
        live = [self.as_extended(SlurmJob.from_dict(j), snapshot) for j in docs["jobs"]["jobs"] if j["user"] == user]
        accounted = _accounted(docs["recent_jobs"], user)
        remembered = await self.in_store(self.store.choices, user)
        ids = {s.name: session_job_id(s, [c.job_id for c in remembered.values() if c.server == s.name], live,
                                      accounted, prefix) for s in servers}
        audit = await self.in_store(self.store.extensions, user, [i for i in ids.values() if i])
        by_id_live, by_id_acc = {j.job_id: j for j in live}, {j.job_id: j for j in accounted}
        cards = [card(s, ids[s.name], by_id_live.get(ids[s.name]), by_id_acc.get(ids[s.name]), now,
                      self.ending_soon_minutes * 60, self.hub_prefix,
                      [e for e in audit if e["job_id"] == ids[s.name]], self.warn_minutes) for s in servers]
        return {"user": user, "at": now, "sessions": cards, "snapshot": docs["jobs"]["snapshot"],
                "poll_seconds": self.poll_seconds, "extend_choices": list(self.extend_choices),
                "warn_minutes": list(self.warn_minutes)}

    def as_extended(self, job: SlurmJob, snapshot_started: float) -> SlurmJob:
        """`job` with the time limit this service set, until a snapshot begun after that shows SLURM's."""
        limit = current_limit(job.time_limit_minutes, snapshot_started, self.limits_set.get(job.job_id))
        if limit == job.time_limit_minutes or not limit or not job.start_time:
            return job
        return replace(job, time_limit_minutes=limit, end_time=job.start_time + limit * 60)

    async def history(self, user: str) -> dict:
        docs = await self.slurm("jobs", "recent_jobs")
        remembered = await self.in_store(self.store.choices, user)
        rows = history(_accounted(docs["recent_jobs"], user), user, docs["jobs"]["job_name_prefix"], remembered,
                       self.history_size)
        return {"user": user, "history": rows, "accounting": docs["recent_jobs"] is not None,
                "snapshot": (docs["recent_jobs"] or {}).get("snapshot")}

    # ---- Extend ------------------------------------------------------------------------------------

    def running_server(self, model: dict, server: str) -> SessionServer:
        found = {s.name: s for s in servers_of(model)}.get(server)
        if found is None:
            raise SessionError(404, f"{model['name']} has no server {server or '(default)'}")
        if not found.ready or not found.job_id:
            raise SessionError(409, f"server {server or '(default)'} of {model['name']} is not running")
        return found

    async def extend(self, actor: str, model: dict, server_name: str, minutes: int) -> dict:
        """Admit +`minutes` like a spawn, then SLURM's scontrol update decides; audited either way."""
        server = self.running_server(model, server_name)
        lock = self.locks.setdefault(server.job_id, asyncio.Lock())
        async with lock:  # one extension of a job at a time: each starts from the limit the last one set
            return await self._extend(actor, model, server, minutes)

    async def _extend(self, actor: str, model: dict, server: SessionServer, minutes: int) -> dict:
        user, job_id = server.user, server.job_id
        docs = await self.slurm("jobs", "usage", "recent_jobs", "reservations")
        snapshot = docs["jobs"]["snapshot"]
        if not snapshot.get("slurm_answering") or not snapshot.get("last_snapshot"):
            raise SessionError(503, "the hub's view of SLURM is not fresh (SLURM does not answer): nothing was changed")
        jobs = [SlurmJob.from_dict(j) for j in docs["jobs"]["jobs"] if j["user"] == user]
        job = next((j for j in jobs if j.job_id == job_id), None)
        if job is None or not job.is_running:
            raise SessionError(409, f"job {job_id} is not running in SLURM ({job.state if job else 'not listed'})")
        limit = current_limit(job.time_limit_minutes, float(snapshot["last_snapshot"]), self.limits_set.get(job_id))
        if not limit:
            raise SessionError(409, f"job {job_id} has no time limit to extend")
        refused = await self.refusal(model, job, limit, minutes, docs)
        audit = {"actor": actor, "user": user, "server": server.name, "job_id": job_id, "minutes": minutes,
                 "from_minutes": limit}
        if refused is not None:
            message = f"Extend refused: {refused.message}"
            await self._audited("refused", audit, message)
            raise SessionError(403, message, refused.limit)
        try:
            await set_time_limit(job_id, limit + minutes, timeout=self.scontrol_timeout)
        except ValueError as e:
            raise SessionError(400, f"minutes: {e}") from None
        except SlurmCommandError as e:
            answered = e.returncode is not None
            message = f"SLURM {'refused' if answered else 'did not answer'}: {e}"
            await self._audited("failed", audit, message)
            raise SessionError(409 if answered else 503, message) from None
        self.limits_set[job_id] = (limit + minutes, time.time())
        entry = await self._audited("extended", {**audit, "to_minutes": limit + minutes},
                                    f"time limit {limit} -> {limit + minutes} min")
        return {"user": user, "server": server.name, "job_id": job_id, "minutes": minutes, "from_minutes": limit,
                "to_minutes": limit + minutes, "end_time": (job.start_time + (limit + minutes) * 60) or None,
                "audit": entry}

    async def refusal(self, model: dict, job: SlurmJob, limit: int, minutes: int, docs: dict) -> Refused | None:
        """Carme's admission of the extension: the user's effective limits (role default, the quota store's
        override and project template, as the hub reads them) against their use in the view."""
        user, quota = model["name"], self.quota
        stored = await stored_quota(quota.db_url, user, job.account, self.log)
        limits = effective_limits(quota.role_default(role_of_model(model, self.power_groups)), stored.template,
                                  stored.override)
        usage_map = {f"{u['account']}/{u['user']}": AssociationUsage.from_dict(u) for u in docs["usage"]["usage"]}
        usage = user_usage(user, job.account, [job], usage_map, _accounted(docs["recent_jobs"], user),
                           docs["jobs"]["job_name_prefix"], quota.usage_reset_period, datetime.now())
        whole = usage_map.get(f"{job.account}/")
        project_usage = replace(usage, gpu_minutes_used=whole.gpu_minutes_used if whole else 0.0,
                                gpu_minutes_running=whole.gpu_minutes_running if whole else 0.0)
        reservation = next((r for r in docs["reservations"]["reservations"] if r["name"] == job.reservation), None)
        return extension_refusal(job, limit, minutes, limits, usage, stored.template, project_usage,
                                 self.partition_max_minutes.get(job.partition),
                                 reservation["end_time"] if reservation else None, job.reservation)

    async def _audited(self, outcome: str, audit: dict, message: str) -> dict:
        self.counters["extensions"].labels(outcome).inc()
        log = self.log.info if outcome == "extended" else self.log.warning
        log("extend %s/%s (job %s) +%d min by %s: %s: %s", audit["user"], audit["server"], audit["job_id"],
            audit["minutes"], audit["actor"], outcome, message)
        return await self.in_store(self.store.audit, outcome=outcome, message=message, **audit)

    # ---- Relaunch and Stop, through the hub's REST API ---------------------------------------------

    async def relaunch(self, actor: str, model: dict, server_name: str, job_id: str | None) -> dict:
        """Start the server again with the same options (those of `job_id` from the history, if given)."""
        user = model["name"]
        hub_server = {s.name: s for s in servers_of(model)}.get(server_name)
        if hub_server is not None and hub_server.active:
            raise SessionError(409, f"server {server_name or '(default)'} of {user} is running or starting: stop it "
                               "first")
        remembered = await self.in_store(self.store.choices, user)
        try:
            options = relaunch_options(user, server_name, hub_server, job_id, remembered)
        except RelaunchError as e:
            raise SessionError(404, str(e)) from None
        try:
            code, _ = await self.hub_client().post(server_path(user, server_name), {"user_options": options})
        except HTTPClientError as e:
            raise hub_refusal(e, "start") from None
        self.counters["relaunches"].inc()
        self.log.info("relaunch %s/%s by %s with %s (the hub answered %d)", user, server_name, actor, options, code)
        return {"user": user, "server": server_name, "options": options, "job_id": job_id,
                "hub_status": code, "status": "starting" if code == 202 else "started"}

    async def stop(self, actor: str, model: dict, server_name: str) -> dict:
        user = model["name"]
        found = {s.name: s for s in servers_of(model)}.get(server_name)
        if found is None or not found.active:
            raise SessionError(409, f"server {server_name or '(default)'} of {user} is not running")
        try:
            await self.hub_client().delete(server_path(user, server_name))
        except HTTPClientError as e:
            raise hub_refusal(e, "stop") from None
        self.counters["stops"].inc()
        self.log.info("stop %s/%s (job %s) by %s", user, server_name, found.job_id, actor)
        return {"user": user, "server": server_name, "job_id": found.job_id, "status": "stopping"}


def hub_refusal(e: HTTPClientError, what: str) -> SessionError:
    """The hub's refusal of a start or stop, with its own words (a 4xx keeps its status)."""
    message = str(e)
    body = getattr(e.response, "body", b"") if e.response is not None else b""
    try:
        message = json.loads(body).get("message") or message
    except (ValueError, AttributeError, TypeError):
        pass
    status = e.code if 400 <= e.code < 500 else 502
    return SessionError(status, f"the hub refused to {what} the server: {message}")


def _accounted(document: dict | None, user: str) -> list[AccountedJob]:
    return [AccountedJob.from_dict(j) for j in (document or {}).get("jobs", []) if j["user"] == user]


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(SessionsService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-sessions.sqlite")
    return {
        "service": service_spec(SessionsService, settings, values, url=values.get("url", "http://127.0.0.1:10108"),
                                allowed_scopes=[READ_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            READ_SCOPE: {"description": "Read a user's session cards and history; extend, relaunch and stop their "
                                        "servers."},
            ADMIN_SCOPE: {"description": "Read and act on every user's sessions; read every extension's audit."},
        },
        "roles": [
            own_role(NAME, ["list:users", "read:users", "read:users:activity", "read:servers", "admin:server_state",
                            "servers"],
                     "carme-sessions reads every server (its options and state), the SLURM view, and starts and "
                     "stops servers for their users."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE],
                        "The hub's admins see and extend everyone's sessions."),
        ],
        "user_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
        # the session's own token: its JupyterLab (carme_lab) reads the card and asks for Extend
        "server_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
    }


if __name__ == "__main__":
    SessionsService.launch_instance()
