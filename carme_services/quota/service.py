"""The carme-quota service: settings, the sync pass (policy -> SLURM associations), the hub wiring."""

from __future__ import annotations

import asyncio
import json
import pwd
import time
from functools import cached_property
from pathlib import Path

from prometheus_client import Gauge
from traitlets import Bool, Enum, Float, Integer, Unicode

from carme_core.roles import ROLES, role_of_model
from carme_quota.desired import ProjectPolicy, desired_state, unmanageable
from carme_quota.sacctmgr import (
    DesiredState,
    current_state_commands,
    dry_run_text,
    parse_state,
    plan,
)
from carme_quota.disk import group_limits
from carme_quota.settings import CarmeQuota
from carme_quota.store import QuotaStore, database
from carme_slurm import command_env, run_command

from ..base import CarmeService, PeriodicTask
from .disk_pass import (
    BeegfsBackend,
    DirectoryBackend,
    gid_of,
    keys_from_json,
    keys_to_json,
    run_disk_pass,
    uid_of,
    wanted_limits,
)
from ..wiring import (
    ServiceSettings,
    admins_role,
    checked_settings,
    own_role,
    service_spec,
)

NAME = "carme-quota"
READ_SCOPE = "custom:carme-quota:read"  # a user's limits and usage: users hold it for themselves
ADMIN_SCOPE = "custom:carme-quota:admin"  # every user's, overrides, projects, the audit, the sync


class QuotaService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "Keep Carme's quota policy in SLURM's associations and explain it: usage, limits, projects."

    db_url = Unicode("", config=True, help="SQLAlchemy URL of Carme's quota store (overrides, projects, audit), "
                     "e.g. postgresql+psycopg://carme@db/carme; default sqlite:///<carme.state_dir>/carme-quota.sqlite. "
                     "The hub reads it too (CarmeQuota.db_url).")
    sync_interval = Float(300.0, config=True, help="Seconds between syncs of the policy into SLURM (one also "
                          "runs at start and after every change made through this service).")
    delay = Float(2.0, config=True, help="Seconds before the first sync.")
    overwrite_drift = Bool(False, config=True, help="Overwrite limits changed by hand in SLURM (drift) with "
                           "Carme's policy. Off: drift is reported to admins and left alone.")
    dry_run = Bool(False, config=True, help="Plan the sacctmgr commands and report them, never run them.")
    cluster = Unicode("", config=True, help="SLURM cluster name for sacctmgr (empty: the one cluster slurmdbd keeps).")
    once = Bool(False, config=True, help="One sync, print it (the commands and the drift), exit.")
    min_uid = Integer(1000, config=True, help="Hub users whose account on this host has a lower uid (root, "
                      "daemons) get no association (as CarmeSpawner.min_uid keeps their jobs out).")

    disk_backend = Enum(["", "beegfs", "directory"], "", config=True, help="Where disk limits (disk_gib, "
                        "disk_inodes) live: beegfs (beegfs-ctl --setquota/--getquota: BeeGFS enforces them), "
                        "directory (each user's and project's directory is measured; nothing enforces the limits, "
                        "users are warned), empty: no disk pass.")
    beegfs_ctl = Unicode("beegfs-ctl", config=True, help="The beegfs-ctl command (name on PATH or absolute path).")
    beegfs_mount = Unicode("", config=True, help="beegfs-ctl --mount=: the BeeGFS mount point to act on "
                           "(empty: beegfs-ctl's default client configuration).")
    beegfs_storage_pool = Integer(1, config=True, help="beegfs-ctl --storagepoolid=: the storage pool whose quota "
                                  "Carme sets and reads.")
    project_group = Unicode("{project}", config=True, help="The Unix group owning a project's files, whose group "
                            "quota the project template's disk limits set; {project} is the project's name.")
    disk_user_dir = Unicode("", config=True, help="directory backend: a user's directory, {username} filled in, "
                            "e.g. /home/{username}.")
    disk_project_dir = Unicode("", config=True, help="directory backend: a project's directory, {project} filled in.")
    disk_scan_max_entries = Integer(200_000, config=True, help="directory backend: stop counting a directory after "
                                    "this many entries (the use is then shown as 'at least').")
    disk_scan_max_seconds = Float(30.0, config=True, help="directory backend: stop counting a directory after this "
                                  "many seconds (in a worker thread, never on the event loop).")

    aliases = {**CarmeService.aliases, "db-url": "QuotaService.db_url", "cluster": "QuotaService.cluster"}
    flags = {"once": ({"QuotaService": {"once": True}}, "one sync, print it, exit"),
             "dry-run": ({"QuotaService": {"dry_run": True}}, "plan the sacctmgr commands, never run them")}

    def initialize(self, argv=None):
        super().initialize(argv)
        if not self.db_url:
            raise SystemExit(f"{NAME}: db_url is not set (carme: quota: db_url: in the settings file)")
        self.last_sync: dict = {"at": None, "commands": [], "drift": [], "error": None, "dry_run": self.dry_run}
        self.last_disk: dict = {"at": None, "changes": [], "error": None, "enforced": None}
        self._sync_lock = asyncio.Lock()

    @cached_property
    def quota(self) -> CarmeQuota:
        return CarmeQuota(parent=self)

    @cached_property
    def store(self) -> QuotaStore:
        db = database(self.db_url)
        db.upgrade()
        return QuotaStore(db)

    @cached_property
    def drift_gauge(self) -> Gauge:
        return Gauge("carme_quota_drift", "Limits changed by hand in SLURM, found by the last sync",
                     registry=self.metrics.registry)

    @cached_property
    def disk_over_gauge(self) -> Gauge:
        return Gauge("carme_quota_disk_over_limit", "Users and project groups at or over a disk limit, by the "
                     "last disk pass", registry=self.metrics.registry)

    @cached_property
    def disk(self):
        if self.disk_backend == "beegfs":
            return BeegfsBackend(self.beegfs_ctl, self.beegfs_storage_pool, self.beegfs_mount)
        if self.disk_backend == "directory":
            return DirectoryBackend(self.disk_user_dir, self.disk_project_dir, self.disk_scan_max_entries,
                                    self.disk_scan_max_seconds)
        return None

    def web_handlers(self):
        from .api import handlers
        from .pages import page_handlers

        return [*handlers(), *page_handlers()]

    def periodic_tasks(self):
        return [PeriodicTask("sync", self.sync_interval, self.sync, self.delay)]

    # ---- the sync: one pass of I/O around the pure plan ------------------------------------------------

    async def hub_roles(self) -> dict[str, str]:
        """Every hub user with the Carme role the hub gives them (system accounts left out)."""
        users = await self.hub_client().get_all("users")
        skipped = sorted(u["name"] for u in users if unmanageable(u["name"]))
        if skipped:
            self.log.warning("no SLURM association for hub users whose names SLURM cannot take: %s", ", ".join(skipped))
        return {u["name"]: role_of_model(u, self.power_groups) for u in users if not self.system_account(u["name"])}

    def system_account(self, name: str) -> bool:
        try:
            return pwd.getpwnam(name).pw_uid < self.min_uid
        except KeyError:  # not on this host (a directory user): not a system account
            return False

    def policy_inputs(self) -> tuple[dict, list[ProjectPolicy]]:
        overrides = self.store.overrides()
        projects = [self.store.project(name) for name in self.store.project_names()]
        return overrides, [ProjectPolicy(p.name, p.template, p.members) for p in projects]

    async def policy_now(self) -> tuple[dict[str, str], dict, list[ProjectPolicy]]:
        """The policy's inputs, read once per sync for SLURM and the disk: the hub's users with their
        roles, the store's overrides and projects."""
        users = await self.hub_roles()
        overrides, projects = await asyncio.to_thread(self.policy_inputs)
        return users, overrides, projects

    async def desired(self, policy: tuple[dict[str, str], dict, list[ProjectPolicy]]) -> DesiredState:
        if not self.quota.account:
            raise RuntimeError("CarmeQuota.account is not set: the sync keeps every user's association in it")
        users, overrides, projects = policy
        cluster = self.cluster or await self.only_cluster()
        defaults = {role: self.quota.role_default(role) for role in ROLES}
        return desired_state(cluster, self.quota.account, defaults, users, overrides, projects)

    async def only_cluster(self) -> str:
        """The one cluster slurmdbd keeps (else `cluster` must say which)."""
        out = await run_command(["sacctmgr", "-n", "-P", "show", "cluster", "format=Cluster"], env=command_env(),
                                timeout=60)
        clusters = sorted({line.strip() for line in out.splitlines() if line.strip()})
        if len(clusters) != 1:
            raise RuntimeError(f"slurmdbd keeps {len(clusters)} clusters ({', '.join(clusters)}): set carme.quota.cluster")
        return clusters[0]

    async def sync(self, dry_run: bool | None = None, overwrite_drift: bool = False) -> dict:
        """Plan SLURM's associations against the policy and (unless dry) apply the plan; the result.
        `overwrite_drift` (an admin's explicit ask, or the setting) also puts back hand-made changes."""
        dry_run = self.dry_run if dry_run is None else dry_run
        async with self._sync_lock:
            began, policy = time.time(), None
            try:
                policy = await self.policy_now()
                result = await self._sync(dry_run, overwrite_drift or self.overwrite_drift, policy)
            except Exception as e:  # noqa: BLE001 - a report: the change that asked for it is saved already
                self.log.warning("sync failed: %s: %s", type(e).__name__, e)
                result = {**self.last_sync, "error": f"{e}", "error_at": began}
            self.last_sync = {**result, "took_s": round(time.time() - began, 3)}
            if self.disk is not None and not dry_run:
                await self.disk_pass(overwrite_drift or self.overwrite_drift, policy)
            return self.last_sync

    async def disk_pass(self, overwrite_drift: bool, policy=None) -> dict:
        """The policy's disk limits onto the file system and its use read back (`disk_pass`); a report.
        `policy`: the sync's reading of it (None: the sync could not read it, this pass tries again)."""
        began = time.time()
        try:
            users, overrides, projects = policy or await self.policy_now()
            defaults = {role: self.quota.role_default(role) for role in ROLES}
            project_limits = {p.name: group_limits(p.template) for p in projects}
            wanted, missing = wanted_limits(users, defaults, overrides, project_limits, uid_of,
                                            lambda p: gid_of(self.project_group.format(project=p)))
            if missing:
                self.log.warning("disk: no id on this host for %s", ", ".join(missing))
            last = keys_from_json(await asyncio.to_thread(self.store.last_applied, "disk"))
            changes, reading, applied = await run_disk_pass(self.disk, wanted, last, overwrite_drift, self.log)
            await asyncio.to_thread(self.store.save_disk_usage, reading.values())
            await asyncio.to_thread(self.store.save_applied, keys_to_json(applied), "disk")
            self.disk_over_gauge.set(sum(bool(u.reached()) for u in reading.values()))
            self.last_disk = {"at": time.time(), "enforced": self.disk.enforced, "error": None, "missing": missing,
                              "changes": [vars(c) for c in changes], "read": len(reading)}
        except Exception as e:  # noqa: BLE001 - a report; the next sync tries again
            self.log.warning("disk pass failed: %s: %s", type(e).__name__, e)
            self.last_disk = {**self.last_disk, "error": f"{e}", "error_at": began}
        self.last_disk["took_s"] = round(time.time() - began, 3)
        return self.last_disk

    async def _sync(self, dry_run: bool, overwrite_drift: bool, policy) -> dict:
        desired = await self.desired(policy)
        outputs = [await run_command(argv, env=command_env(), timeout=60)
                   for argv in current_state_commands(desired.cluster)]
        last = await asyncio.to_thread(self.store.last_applied)
        the_plan = plan(desired, parse_state(*outputs), DesiredState.from_dict(last) if last else None,
                        overwrite_drift=overwrite_drift)
        for drift in the_plan.drift:
            self.log.warning("drift: %s %s is %s in SLURM, Carme's policy says %s%s", drift.what, drift.field,
                             drift.slurm, drift.carme, " (overwritten)" if drift.overwritten else "")
        self.drift_gauge.set(sum(not d.overwritten for d in the_plan.drift))
        ran = []
        if not dry_run:
            for argv in the_plan.commands:
                await run_command(argv, env=command_env(), timeout=60)
                ran.append(argv)
            await asyncio.to_thread(self.store.save_applied, desired.to_dict())
        if the_plan.commands:
            self.log.info("sync%s: %d sacctmgr commands\n%s", " (dry run)" if dry_run else "",
                          len(the_plan.commands), dry_run_text(the_plan))
        return {
            "at": time.time(), "dry_run": dry_run, "cluster": desired.cluster, "commands": the_plan.commands,
            "ran": len(ran), "drift": [vars(d) for d in the_plan.drift], "error": None,
            "associations": len(desired.associations),
        }

    def start(self):
        if self.once:
            result = asyncio.run(self.sync())
            print(json.dumps(result, indent=2, default=str))
            raise SystemExit(1 if result.get("error") else 0)
        super().start()


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(QuotaService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-quota.sqlite")
    return {
        "service": service_spec(QuotaService, settings, values, url=values.get("url", "http://127.0.0.1:10103"),
                                allowed_scopes=[READ_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            READ_SCOPE: {"description": "Read a user's Carme quota: limits, usage, projects."},
            ADMIN_SCOPE: {"description": "Change Carme's quotas: overrides, projects, the sync; read the audit."},
        },
        "roles": [
            own_role(NAME, ["list:users", "read:users"],
                     "carme-quota reads every user's role (admin flag, groups) and the SLURM view."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE],
                        "The hub's admins may read and change every user's quota."),
        ],
        # every user reads their own quota and uses the service's pages
        "user_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
        # the hub's admission reads the same store (overrides, projects)
        "config": {"CarmeQuota": {"db_url": values["db_url"]}},
    }


if __name__ == "__main__":
    QuotaService.launch_instance()
