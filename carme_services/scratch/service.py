"""The carme-scratch service: jobs' scratch as admins and users see it, and the sweeper.

The SLURM Prolog and Epilog (`carme_slurm.node_scripts`) make and remove the scratch; this service
watches what they leave. Each pass reads the hub's ONE view of SLURM (jobs and nodes) and the
node directories this host reaches, and removes the entries of jobs SLURM no longer knows (a node
that rebooted, an epilog that failed), never one that changed within `grace` of the view's
snapshot. Everything it removes is logged, here and in the node scripts' log.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, fields
from functools import cached_property

from prometheus_client import Counter, Gauge
from tornado import web
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, validate

from carme_slurm import SlurmJob
from carme_slurm.scratch import ScratchLayout, layout_from_settings, leftovers

from ..base import CarmeService, CarmeServiceHandler, PeriodicTask
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from . import disk

NAME = "carme-scratch"
READ_SCOPE = "custom:carme-scratch:read"
ADMIN_SCOPE = "custom:carme-scratch:admin"
_DEFAULT = ScratchLayout()
#: the service's settings that are the layout's (the spawner and the node scripts get exactly these)
LAYOUT_KEYS = tuple(f.name for f in fields(ScratchLayout))


class ScratchService(CarmeService):
    name = NAME
    description = "Jobs' scratch (node SSD directories, BeeOND): who holds what, and the sweeper of leftovers."

    node_dir = Unicode(_DEFAULT.node_dir, config=True,
                       help="The nodes' local SSD directory for single-node jobs' scratch (job-<id> in it); "
                       "{node} is the node's SLURM name (for several slurmds on one host).")
    container_path = Unicode(_DEFAULT.container_path, config=True,
                             help="Where the container sees the job's scratch (also $CARME_SCRATCH).")
    beeond = Bool(_DEFAULT.beeond, config=True,
                  help="Multi-node jobs get a BeeOND instance over their nodes; false: a directory on each node.")
    beeond_command = Unicode(_DEFAULT.beeond_command, config=True, help="The beeond command (a full path: "
                             "the prolog runs with an empty environment).")
    beeond_data_dir = Unicode(_DEFAULT.beeond_data_dir, config=True,
                              help="BeeOND's raw data on each node's SSD (beeond start -d <this>/job-<id>).")
    beeond_mount_dir = Unicode(_DEFAULT.beeond_mount_dir, config=True,
                               help="Where BeeOND is mounted (beeond start -c <this>/job-<id>).")
    beeond_start_flags = List(Unicode(), list(_DEFAULT.beeond_start_flags), config=True,
                              help="More flags of beeond start (Carme sets -n, -d and -c), e.g. -P (pdsh), -F.")
    beeond_stop_flags = List(Unicode(), list(_DEFAULT.beeond_stop_flags), config=True,
                             help="More flags of beeond stop (Carme sets -n, -L and -d).")
    beeond_timeout = Integer(_DEFAULT.beeond_timeout, config=True,
                             help="Seconds beeond start or stop may take before the prolog gives up.")
    hostlist_command = Unicode(_DEFAULT.hostlist_command, config=True,
                               help="python-hostlist's hostlist command (expands SLURM_JOB_NODELIST for the node file).")
    state_dir = Unicode(_DEFAULT.state_dir, config=True,
                        help="Root-only directory of the node scripts' BeeOND node files (job-<id>.nodes).")
    log_file = Unicode(_DEFAULT.log_file, config=True, help="The node scripts' log (and this service's removals).")
    default_gib = Integer(0, config=True,
                          help="The scratch size (GiB) a server asks for when its user names none (sbatch --tmp: "
                          "a node with that much TmpDisk), lowered to the user's scratch_gib and the partition's "
                          "largest node; 0: none, any node. Handed to the spawner (CarmeSpawner.scratch_default_gib).")

    @validate("default_gib")
    def _check_default_gib(self, proposal):
        if not 0 <= proposal.value <= 1_000_000:
            raise TraitError(f"default_gib: must be 0..1000000 GiB, not {proposal.value}")
        return proposal.value

    sweep_interval = Float(300.0, config=True, help="Seconds between sweeps.")
    delay = Float(5.0, config=True, help="Seconds before the first sweep.")
    grace = Float(600.0, config=True,
                  help="An entry that changed within this many seconds of the view's snapshot is never swept "
                  "(its job may be too new for the snapshot).")
    max_entries = Integer(100_000, config=True,
                          help="Files counted at most per scratch for its size (beyond: 'at least').")
    dry_run = Bool(False, config=True, help="Sweep: log what would be removed, remove nothing.")
    once = Bool(False, config=True, help="One sweep, print it as JSON, exit.")

    aliases = {**CarmeService.aliases, "grace": "ScratchService.grace"}
    flags = {"once": ({"ScratchService": {"once": True}}, "one sweep, print it as JSON, exit"),
             "dry-run": ({"ScratchService": {"dry_run": True}}, "remove nothing, say what would go")}

    def initialize(self, argv=None):
        super().initialize(argv)
        self.layout  # checked now: a bad setting stops the service at start
        self.last: dict = {"last_sweep": None, "removed": [], "failed": [], "error": None}
        self.audit: list[dict] = []
        self.removing = asyncio.Lock()  # one sweep or cleanup at a time

    @cached_property
    def layout(self) -> ScratchLayout:
        """The checked layout from this service's settings (ValueError naming the key)."""
        return layout_from_settings({k: getattr(self, k) for k in LAYOUT_KEYS})

    @cached_property
    def instances_gauge(self) -> Gauge:
        return Gauge("carme_scratch_instances", "Jobs' scratch directories and BeeOND instances found",
                     registry=self.metrics.registry)

    @cached_property
    def bytes_gauge(self) -> Gauge:
        return Gauge("carme_scratch_bytes", "Bytes in jobs' scratch (a lower bound where a walk stopped)",
                     registry=self.metrics.registry)

    @cached_property
    def cleanup_failures(self) -> Counter:
        return Counter("carme_scratch_cleanup_failures", "Scratch entries the sweeper or an admin could not remove",
                       registry=self.metrics.registry)

    def web_handlers(self):
        return [(r"api/instances", InstancesHandler, {}), (r"api/instances/([0-9]{1,12})/cleanup", CleanupHandler, {}),
                (r"api/sweep", SweepHandler, {}), (r"/?", web.RedirectHandler, {"url": "api/instances"})]

    def periodic_tasks(self):
        return [PeriodicTask("sweep", self.sweep_interval, self.sweep, self.delay)]

    async def view(self) -> tuple[list[dict], list[str], float]:
        """The view's jobs, node names and when its job snapshot began; RuntimeError while it is not fresh."""
        client = self.hub_client()
        jobs, nodes = await asyncio.gather(client.slurm("jobs"), client.slurm("nodes"))
        snapshot = jobs["snapshot"]
        if not snapshot.get("slurm_answering") or not snapshot.get("last_snapshot"):
            raise RuntimeError(f"the hub's SLURM view is not fresh: {snapshot.get('last_error') or 'no snapshot yet'}")
        return jobs["jobs"], [n["name"] for n in nodes["nodes"]], float(snapshot["last_snapshot"])

    async def fresh_view(self) -> tuple[list[dict], list[str], float]:
        """The view for a request: 503 while it is not fresh (nothing is judged on a stale one)."""
        try:
            return await self.view()
        except RuntimeError as e:
            raise web.HTTPError(503, str(e)) from None

    async def instances(self) -> list[dict]:
        """Every scratch found, with its job's state from the view ("gone" when SLURM lists it no more)."""
        jobs, nodes, _ = await self.fresh_view()
        states = {str(j["job_id"]): j for j in jobs}
        entries = await asyncio.to_thread(disk.read_entries, self.layout, nodes, self.max_entries)
        now = time.time()
        found = []
        for entry in entries:
            job = states.get(entry.job_id)
            # whose it is in the hub: the Carme job's hub user, else the job's (or the directory's) account
            owner = (job.get("carme_user") or job["user"]) if job else entry.user
            found.append({**asdict(entry), "age": int(now - entry.mtime), "job_state": job["state"] if job else "gone",
                          "job_user": job["user"] if job else entry.user, "owner": owner})
        self.instances_gauge.set(len(found))
        self.bytes_gauge.set(sum(e["bytes"] for e in found))
        return found

    async def sweep(self) -> dict:
        async with self.removing:
            return await self._sweep()

    async def _sweep(self) -> dict:
        try:
            jobs, nodes, snapshot = await self.view()
        except Exception as e:  # doubt is not evidence: without a fresh view nothing is removed
            self.log.warning("sweep skipped: %s", e)
            self.last = {**self.last, "error": f"{type(e).__name__}: {e}", "error_time": time.time()}
            return self.last
        live = {str(j["job_id"]) for j in jobs}
        by_node, state = await asyncio.to_thread(disk.entries_by_node, self.layout, nodes)
        chosen = leftovers(by_node, state, live, snapshot, self.grace, self.layout)
        removed, failed = [], []
        for leftover in chosen:
            why = "" if self.dry_run else await asyncio.to_thread(disk.remove, leftover, self.layout)
            record = {**asdict(leftover), "dry_run": self.dry_run}
            if why:
                failed.append({**record, "error": why})
                self.cleanup_failures.inc()
                self.log.error("sweep: could not remove %s (job %s, gone from SLURM): %s", leftover.path,
                               leftover.job_id, why)
            else:
                removed.append(record)
                self.log.warning("sweep: %s %s (job %s, gone from SLURM)",
                                 "would remove" if self.dry_run else "removed", leftover.path, leftover.job_id)
                if not self.dry_run:
                    disk.append_log(self.layout, f"swept {leftover.path} (job {leftover.job_id} gone from SLURM)")
        self.last = {"last_sweep": time.time(), "snapshot": snapshot, "nodes": nodes, "removed": removed,
                     "failed": failed, "dry_run": self.dry_run, "error": None}
        return self.last

    async def force_cleanup(self, job_id: str, admin: str) -> dict:
        async with self.removing:
            return await self._force_cleanup(job_id, admin)

    async def _force_cleanup(self, job_id: str, admin: str) -> dict:
        """An admin's cleanup of one job's scratch: only for a job SLURM does not list as running."""
        jobs, nodes, snapshot = await self.fresh_view()
        job = next((SlurmJob.from_dict(j) for j in jobs if str(j["job_id"]) == job_id), None)
        if job is not None and not job.is_terminal:
            raise web.HTTPError(409, f"job {job_id} is {job.state}: its scratch is in use; scancel the job first")
        by_node, state = await asyncio.to_thread(disk.entries_by_node, self.layout, nodes)
        every = [item for item in leftovers(by_node, state, set(), float("inf"), 0, self.layout) if item.job_id == job_id]
        if not every:
            raise web.HTTPError(404, f"no scratch of job {job_id} on the nodes this service reaches")
        # judged on the view: what changed after its snapshot may belong to a job it does not know yet
        chosen = [item for item in leftovers(by_node, state, set(), snapshot, 0, self.layout) if item.job_id == job_id]
        if len(chosen) < len(every):
            raise web.HTTPError(409, f"job {job_id}'s scratch is newer than the SLURM view's last snapshot; "
                                "try again in a few seconds")
        results = []
        for leftover in chosen:
            why = await asyncio.to_thread(disk.remove, leftover, self.layout)
            if why:
                self.cleanup_failures.inc()
            results.append({"path": leftover.path, "kind": leftover.kind, "error": why or None})
        entry = {"time": time.time(), "admin": admin, "job_id": job_id, "results": results}
        self.audit.append(entry)
        self.log.warning("cleanup by %s of job %s's scratch: %s", admin, job_id, json.dumps(results))
        disk.append_log(self.layout, f"cleanup by {admin} of job {job_id}: {json.dumps(results)}")
        return entry

    def start(self):
        if self.once:
            result = asyncio.run(self.sweep())
            print(json.dumps(result, indent=2))
            raise SystemExit(1 if result.get("error") else 0)
        self.log.info("scratch in %s (BeeOND %s), sweep every %g s, grace %g s", self.node_dir,
                      "on" if self.beeond else "off", self.sweep_interval, self.grace)
        super().start()


class InstancesHandler(CarmeServiceHandler):
    """GET: the scratch found; admins see all, a user their own jobs'."""

    @web.authenticated
    async def get(self):
        admin = self.has_scope(ADMIN_SCOPE)
        self.require(admin or self.has_scope(READ_SCOPE, user=self.username),
                     f"seeing your jobs' scratch needs {READ_SCOPE}!user={self.username}")
        found = await self.service.instances()
        if not admin:
            found = [e for e in found if e["owner"] == self.username]
        self.write_json({"instances": found, "container_path": self.service.container_path})


class CleanupHandler(CarmeServiceHandler):
    """POST: an admin removes the scratch of a job that no longer runs (audited)."""

    @web.authenticated
    async def post(self, job_id: str):
        self.require(self.has_scope(ADMIN_SCOPE), f"a cleanup needs {ADMIN_SCOPE} (the hub's admins)")
        self.write_json(await self.service.force_cleanup(job_id, self.username))


class SweepHandler(CarmeServiceHandler):
    """GET: the last sweep and the cleanups admins forced; POST: sweep now (admins)."""

    @web.authenticated
    def get(self):
        self.require(self.has_scope(ADMIN_SCOPE), f"the sweeper's report needs {ADMIN_SCOPE} (the hub's admins)")
        self.write_json({**self.service.last, "audit": self.service.audit[-100:]})

    @web.authenticated
    async def post(self):
        self.require(self.has_scope(ADMIN_SCOPE), f"a sweep needs {ADMIN_SCOPE} (the hub's admins)")
        self.write_json(await self.service.sweep())


def layout_settings(values: dict) -> dict:
    """The layout part of the service's settings, with the service's defaults filled in."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in ((k, values.get(k, getattr(_DEFAULT, k))) for k in LAYOUT_KEYS)}


def hub_service(settings: ServiceSettings) -> dict:
    values, app = checked_settings(ScratchService, settings)
    try:
        app.layout
    except ValueError as e:
        raise ValueError(f"carme.{settings.key}.{e}") from None
    return {
        "service": service_spec(ScratchService, settings, values, url=values.get("url", "http://127.0.0.1:10106"),
                                allowed_scopes=[READ_SCOPE, ADMIN_SCOPE], display=False),
        "custom_scopes": {
            READ_SCOPE: {"description": "See a user's jobs' scratch (path, nodes, size)."},
            ADMIN_SCOPE: {"description": "See every job's scratch, sweep now and force a cleanup."},
        },
        "roles": [
            own_role(NAME, [], "carme-scratch reads the SLURM view (jobs, nodes)."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE], "The hub's admins see and clean all scratch."),
        ],
        "user_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
        # the batch script binds the same paths the prolog makes
        "config": {"CarmeSpawner": {"scratch": layout_settings(values), "scratch_default_gib": app.default_gib}},
    }


if __name__ == "__main__":
    ScratchService.launch_instance()
