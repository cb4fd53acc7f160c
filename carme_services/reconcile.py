"""carme-reconcile: find SLURM jobs that Carme started but no hub server claims (orphans).

    python -m carme_services.reconcile [--ReconcileService.policy=report|cancel] [--once] [--help-all]

Each pass reads the hub's active servers (REST API, this service's own token: list:users,
read:users, read:servers, admin:server_state) and the hub's ONE view of SLURM
(`GET /hub/api/carme/slurm/jobs`): it never asks SLURM itself. A job is an orphan when it is
active, its name has the view's job prefix, it is older than `grace`, and no hub server claims
it: no ready or pending server has its job id in `state.job_id`, and its comment
`carme:<user>/<server-slug>` names no server that is still spawning (a spawn's job id reaches the
hub's state only once sbatch returned). `report` logs orphans, `cancel` also scancels them (the
only SLURM command this service runs). Adopting a job is not offered: the hub cannot verify the
server token inside it.

Servers whose job vanished are the hub's business (CarmeSpawner.poll() marks them stopped, with
the reason in state["last_failure"], also at hub start); this service only reports a ready
server whose job the view no longer lists, and never stops servers.

`GET <prefix>api/orphans` serves the last pass as JSON, to holders of custom:carme-reconcile:read.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from dataclasses import asdict, dataclass, replace
from functools import cached_property

from prometheus_client import Gauge
from tornado import web
from traitlets import Bool, Enum, Float, TraitError, validate

from carme_slurm import (
    SlurmCommandError,
    SlurmJob,
    parse_job_comment,
    scancel,
    server_slug,
)

from .base import CarmeService, CarmeServiceHandler, PeriodicTask
from .wiring import (
    ServiceSettings,
    admins_role,
    checked_settings,
    own_role,
    service_spec,
)

NAME = "carme-reconcile"
READ_SCOPE = "custom:carme-reconcile:read"
POLICIES = ("report", "cancel")
ADOPT_REFUSAL = (
    "adopt is not supported: the hub cannot verify that a job it did not start holds a valid "
    "server token, so taking it over would route users to an unverified server; "
    "use report and start a new server"
)


# ---- the decision (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class HubServer:
    user: str
    name: str  # "" for the default server
    ready: bool
    pending: str | None  # "spawn", "stop", ... while a transition runs
    job_id: str  # from the spawner state ("" when none)
    started: float = 0.0  # when the hub started it (epoch s; 0: unknown)


@dataclass(frozen=True)
class Orphan:
    job_id: str
    user: str
    server: str | None  # the server slug from the job's comment (None: no Carme comment)
    state: str
    node: str
    age: int  # seconds since submission
    action: str = "reported"


def find_orphans(jobs, servers, now: float, grace: float, prefix: str) -> list[Orphan]:
    """The active jobs named `prefix...` that no server claims and that are older than `grace`.

    `now` is when the hub was read: a job submitted later cannot be judged on that reading, and
    SLURM's submit_time is whole seconds, hence the extra second.
    """
    claimed = {s.job_id for s in servers if s.job_id and (s.ready or s.pending)}
    spawning = {(s.user, server_slug(s.name)) for s in servers if s.pending and not s.job_id}
    orphans = []
    for job in jobs:
        if not job.name.startswith(prefix) or not job.is_active or job.job_id in claimed:
            continue
        owner = parse_job_comment(job.comment)
        if owner in spawning or job.submit_time + 1 > now - grace:
            continue
        orphans.append(
            Orphan(
                job_id=job.job_id,
                user=owner[0] if owner else job.user,
                server=owner[1] if owner else None,
                state=job.state,
                node=job.batch_host or job.nodes or "-",
                age=max(0, int(now - job.submit_time)),
            )
        )
    return orphans


def find_vanished(jobs, servers, snapshot_started: float) -> list[dict]:
    """Ready servers whose job the view does not list as active, judged only on a snapshot begun
    after the server started (an older one cannot know a new job)."""
    active = {j.job_id for j in jobs if not j.is_terminal}
    return [
        {"user": s.user, "server": s.name, "job_id": s.job_id}
        for s in servers
        if s.ready and s.job_id and s.job_id not in active and snapshot_started > s.started
    ]


def hub_time(text: str | None) -> float:
    """A time the hub's API gives (ISO 8601, ...Z) as epoch seconds; 0 for none."""
    if not text:
        return 0.0
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def servers_from_users(users: list[dict]) -> list[HubServer]:
    servers = []
    for user in users:
        if "servers" not in user:
            raise RuntimeError("the hub did not show servers: this service's token lacks read:servers")
        for name, model in user["servers"].items():
            if "state" not in model:
                # without the state every job would look unclaimed: refuse to judge at all
                raise RuntimeError("the hub did not show server state: this service's token lacks "
                                   "admin:server_state")
            job_id = str((model.get("state") or {}).get("job_id") or "")
            ready, pending = bool(model.get("ready")), model.get("pending")
            servers.append(HubServer(user["name"], name, ready, pending, job_id, hub_time(model.get("started"))))
    return servers


def jobs_from_view(document: dict) -> tuple[list[SlurmJob], float, str]:
    """The view's jobs, when its snapshot began, and Carme's job prefix; RuntimeError while SLURM
    does not answer the view (doubt is not evidence: nothing is judged on a stale answer)."""
    snapshot = document["snapshot"]
    if not snapshot.get("slurm_answering") or not snapshot.get("last_snapshot"):
        raise RuntimeError(f"the hub's SLURM view is not fresh: {snapshot.get('last_error') or 'no snapshot yet'}")
    jobs = [SlurmJob.from_dict(j) for j in document["jobs"]]
    return jobs, float(snapshot["last_snapshot"]), str(document["job_name_prefix"])


# ---- the service ----------------------------------------------------------------------------------


class ReconcileService(CarmeService):
    name = NAME
    description = "Find Carme's SLURM jobs that no hub server claims (orphans): report or cancel them."

    policy = Enum(["report", "cancel", "adopt"], "report", config=True,
                  help="report: log and list orphans; cancel: also scancel them. (adopt is refused: see the docs.)")
    interval = Float(300.0, config=True, help="Seconds between passes.")
    delay = Float(5.0, config=True, help="Seconds before the first pass.")
    grace = Float(120.0, config=True, help="Never call a job younger than this (s) an orphan.")
    once = Bool(False, config=True, help="One pass, print it as JSON, exit.")

    aliases = {**CarmeService.aliases, "policy": "ReconcileService.policy", "interval": "ReconcileService.interval",
               "grace": "ReconcileService.grace"}
    flags = {"once": ({"ReconcileService": {"once": True}}, "one pass, print it as JSON, exit")}

    @validate("policy")
    def _check_policy(self, proposal):
        if proposal.value == "adopt":
            raise TraitError(ADOPT_REFUSAL)
        return proposal.value

    @validate("interval", "grace")
    def _check_seconds(self, proposal):
        name = proposal.trait.name
        if proposal.value < 0 or (name == "interval" and proposal.value == 0):
            raise TraitError(f"{name} must be {'> 0' if name == 'interval' else '>= 0'} seconds")
        return proposal.value

    def initialize(self, argv=None):
        super().initialize(argv)
        self.last: dict = {"last_pass": None, "policy": self.policy, "orphans": [], "vanished_servers": [],
                           "error": None}

    @cached_property
    def orphans_gauge(self) -> Gauge:
        return Gauge("carme_reconcile_orphans", "Orphan jobs found by the last pass", registry=self.metrics.registry)

    def web_handlers(self):
        return [(r"api/orphans", OrphansHandler, {}), (r"/?", web.RedirectHandler, {"url": "api/orphans"})]

    def periodic_tasks(self):
        return [PeriodicTask("pass", self.interval, self.run_pass, self.delay)]

    async def hub_servers(self) -> list[HubServer]:
        """Every active server with its state (stopped servers claim nothing)."""
        return servers_from_users(await self.hub_client().get_all("users", state="active"))

    async def view_jobs(self) -> tuple[list[SlurmJob], float, str]:
        return jobs_from_view(await self.hub_client().slurm("jobs"))

    async def run_pass(self) -> dict:
        now = time.time()
        try:
            servers = await self.hub_servers()
            jobs, snapshot_started, prefix = await self.view_jobs()
        except Exception as e:  # doubt is not evidence: without both answers nothing is judged
            self.log.warning("pass skipped, keeping the last result: %s", e)
            self.last = {**self.last, "error": f"{type(e).__name__}: {e}", "error_time": now}
            return self.last
        orphans = [await self._act_on(o) for o in find_orphans(jobs, servers, now, self.grace, prefix)]
        vanished = find_vanished(jobs, servers, snapshot_started)
        for v in vanished:
            self.log.warning("server %s/%s is ready but SLURM does not list its job %s",
                             v["user"], v["server"], v["job_id"])
        active = sum(j.name.startswith(prefix) and j.is_active for j in jobs)
        self.log.info("pass done: %d servers, %d active Carme jobs, %d orphans, %d vanished servers",
                      len(servers), active, len(orphans), len(vanished))
        self.orphans_gauge.set(len(orphans))
        self.last = {
            "last_pass": now,
            "snapshot": snapshot_started,
            "policy": self.policy,
            "grace": self.grace,
            "job_prefix": prefix,
            "orphans": [asdict(o) for o in orphans],
            "vanished_servers": vanished,
            "error": None,
        }
        return self.last

    async def _act_on(self, orphan: Orphan) -> Orphan:
        if self.policy == "cancel":
            try:
                await scancel(orphan.job_id)
                orphan = replace(orphan, action="cancelled")
            except (SlurmCommandError, ValueError) as e:
                orphan = replace(orphan, action=f"cancel failed: {e}")
        self.log.warning(
            "orphan SLURM job %s (user %s, server %r, %s on %s, age %d s): %s",
            orphan.job_id, orphan.user, orphan.server, orphan.state, orphan.node, orphan.age, orphan.action,
        )
        return orphan

    def start(self):
        if self.once:
            result = asyncio.run(self.run_pass())
            print(json.dumps(result, indent=2))
            raise SystemExit(1 if result.get("error") else 0)
        self.log.info("policy %s, grace %g s, every %g s", self.policy, self.grace, self.interval)
        super().start()


class OrphansHandler(CarmeServiceHandler):
    """The last pass as JSON, for tokens or OAuth sessions holding READ_SCOPE (others get 403)."""

    hub_scopes = {READ_SCOPE}

    @web.authenticated
    def get(self):
        self.write_json(self.service.last)


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(ReconcileService, settings)
    return {
        "service": service_spec(ReconcileService, settings, values, url=values.get("url", "http://127.0.0.1:10101"),
                                allowed_scopes=[READ_SCOPE], display=False),
        "custom_scopes": {READ_SCOPE: {"description": "Read Carme's reconcile report: orphan jobs, vanished servers."}},
        "roles": [
            own_role(NAME, ["list:users", "read:users", "read:servers", "admin:server_state"],
                     "What carme-reconcile reads: every server and its state (the SLURM job id), and the SLURM view."),
            admins_role(f"{NAME}-readers", settings, [READ_SCOPE], "May read carme-reconcile's report (the hub's admins)."),
        ],
    }


main = ReconcileService.launch_instance

if __name__ == "__main__":
    main()
