"""The hub's ONE view of SLURM: jobs every few seconds, nodes, reservations and accounting more slowly.

`SlurmView.shared()` is the process-wide instance in the hub. Spawners read it in-process
(`job()`, `node_address()`, `wait_for_jobs()`); services read it over the hub API
(`carme_slurm.hub_api`: GET /hub/api/carme/slurm/{jobs,nodes,reservations}). Nobody else asks
SLURM what it is doing: a service that changes SLURM runs its command and then waits for the
next snapshot to see the result.

Its settings are the `SlurmView:` section of the site's settings file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from . import commands, versions
from .accounting import AccountedJob, AssociationUsage
from .jobs import SlurmJob, parse_job_comment
from .gpu_inventory import WHOLE_CLUSTER, gpu_inventory
from .nodes import SlurmNode
from .reflector import JobView, Reflector
from .reservations import SlurmReservation

#: the custom scope that lets admins and services read the view over the hub API (`hub_api`)
VIEW_SCOPE = "custom:carme-slurm:read"


class SlurmView(LoggingConfigurable):
    """The reflectors (jobs, nodes, reservations; usage and today's jobs from accounting) with one set of settings."""

    job_interval = Float(
        5.0,
        config=True,
        help="Seconds between the hub's `squeue --json` calls. ONE call per interval serves every server "
        "and every service; a starting server may ask for an early one (at most one per second).",
    )
    node_interval = Float(
        30.0, config=True, help="Seconds between `sinfo --json` calls (node states, GPUs per type, addresses)."
    )
    reservation_interval = Float(
        30.0, config=True, help="Seconds between `scontrol show reservation` calls."
    )
    accounting_interval = Float(
        60.0,
        config=True,
        help="Seconds between the accounting reads: `sshare` (every association's GPU-minutes this period) "
        "and `sacct` of the recent jobs (accounting_window_days). Quotas are checked against this cached "
        "snapshot, never with a SLURM call per spawn. 0 turns them off (a SLURM without slurmdbd).",
    )
    accounting_window_days = Integer(
        31,
        config=True,
        help="Days of jobs the `sacct` read covers (from local midnight that many days ago): today's servers "
        "for the per-day limit, and the GPU-hours per day of the usage pages. Bounded: never all of history.",
    )
    command_timeout = Float(30.0, config=True, help="Seconds before a SLURM command counts as failed.")
    stale_warning_after = Float(
        60.0,
        config=True,
        help="Warn (hub log, API status) once SLURM has not answered for this many seconds. "
        "Servers are never dropped for that: only a good SLURM answer can end them.",
    )
    job_name_prefix = Unicode(
        "carme-",
        config=True,
        help="Prefix of every Carme job name: the spawner names its jobs with it, and the view marks "
        "jobs with it (and a carme: comment) as Carme's.",
    )

    _shared: SlurmView | None = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        timeout = self.command_timeout
        common = {"stale_warning_after": self.stale_warning_after, "log": self.log}
        self.slurm_version: tuple[int, int, int] | None = None  # sbatch --version, read once
        self._version_read = False
        self.jobs: Reflector[SlurmJob] = Reflector(
            self._squeue_all, lambda j: j.job_id, self.job_interval, "squeue",
            group=lambda j: j.user, **common
        )
        self.nodes: Reflector[SlurmNode] = Reflector(
            self._sinfo_nodes, lambda n: n.name, self.node_interval, "sinfo", **common
        )
        self.reservations: Reflector[SlurmReservation] = Reflector(
            lambda: commands.show_reservations(timeout), lambda r: r.name, self.reservation_interval,
            "scontrol", **common
        )
        self.usage: Reflector[AssociationUsage] = Reflector(
            lambda: commands.sshare_usage(timeout), lambda u: u.key, self.accounting_interval or 60, "sshare", **common
        )
        self.recent_jobs: Reflector[AccountedJob] = Reflector(
            lambda: commands.sacct_jobs_since(_local_midnight() - timedelta(days=self.accounting_window_days), timeout),
            lambda j: j.job_id,
            self.accounting_interval or 60, "sacct", group=lambda j: j.user, **common
        )

    # ---- the JSON queries, with what the SLURM release offers (carme_slurm.versions) ---------------

    async def query_env(self) -> dict[str, str]:
        if not self._version_read:  # once: the release does not change under a running hub
            self._version_read = True
            try:
                self.slurm_version = await commands.slurm_version(self.command_timeout)
                self.log.info("SLURM %s; the view's JSON queries add %s", versions.version_words(self.slurm_version),
                              versions.query_env(self.slurm_version) or "nothing")
            except commands.SlurmCommandError as e:
                self.log.warning("SLURM's release is not known (%s): the view's queries use no newer option", e)
        return versions.query_env(self.slurm_version)

    async def _squeue_all(self) -> list[SlurmJob]:
        return await commands.squeue_all(self.command_timeout, await self.query_env())

    async def _sinfo_nodes(self) -> list[SlurmNode]:
        return await commands.sinfo_nodes(self.command_timeout, await self.query_env())

    # ---- the shared instance -------------------------------------------------------------------

    @classmethod
    def shared(cls, **settings) -> SlurmView:
        """The hub's one view, started; the first caller's settings win (they all come from one config)."""
        if cls._shared is None or any(r.loop_closed() for r in cls._shared.reflectors):
            cls._shared = cls(**settings)
        cls._shared.ensure_started()
        return cls._shared

    @classmethod
    def current(cls) -> SlurmView | None:
        """The shared view if one runs (without starting one)."""
        return cls._shared

    @classmethod
    def reset_shared(cls) -> None:
        """Stop and forget the shared view (tests, and a hub that reloads its config)."""
        if cls._shared is not None:
            cls._shared.stop()
        cls._shared = None

    @property
    def reflectors(self) -> tuple[Reflector, ...]:
        accounting = (self.usage, self.recent_jobs) if self.accounting_interval > 0 else ()
        return (self.jobs, self.nodes, self.reservations, *accounting)

    def ensure_started(self) -> None:
        for reflector in self.reflectors:
            reflector.ensure_started()

    def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()

    # ---- reading --------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobView:
        return JobView(self.jobs.items.get(str(job_id)), self.jobs.snapshot_started)

    def is_carme_job(self, job: SlurmJob) -> bool:
        return job.name.startswith(self.job_name_prefix) and parse_job_comment(job.comment) is not None

    def carme_jobs(self) -> list[SlurmJob]:
        return [j for j in self.jobs.items.values() if self.is_carme_job(j)]

    def pending_position(self, job: SlurmJob) -> tuple[int, int]:
        """(position, count) of `job` among Carme's pending jobs in its partition, by submission."""
        waiting = sorted((j for j in self.carme_jobs() if j.is_pending and j.partition == job.partition),
                         key=lambda j: (j.submit_time, int(j.job_id) if j.job_id.isdigit() else 0))
        ids = [j.job_id for j in waiting]
        return (ids.index(job.job_id) + 1 if job.job_id in ids else 0), len(ids)

    async def node_address(self, node: str) -> str:
        """The address SLURM has for `node` (NodeAddr); waits for one node snapshot if it is new."""
        if node not in self.nodes.items:
            await self.nodes.wait_for_snapshot(self.nodes.snapshot_started, timeout=self.command_timeout)
        known = self.nodes.items.get(node)
        if known is None or not known.address:
            self.log.warning("SLURM lists no address for node %s: using its name", node)
            return node
        return known.address

    def health(self) -> dict:
        """Is SLURM answering each of the three watches."""
        return {
            "jobs": self.jobs.health(),
            "nodes": self.nodes.health(),
            "reservations": self.reservations.health(),
            **({"usage": self.usage.health(), "recent_jobs": self.recent_jobs.health()}
               if self.accounting_interval > 0 else {}),
            "carme_jobs": len(self.carme_jobs()),
        }

    # ---- what the hub API serves ---------------------------------------------------------------

    def jobs_document(self) -> dict:
        jobs = []
        for job in sorted(self.jobs.items.values(), key=lambda j: int(j.job_id)):
            owner = parse_job_comment(job.comment) if self.is_carme_job(job) else None
            jobs.append({**job.to_dict(), "carme": owner is not None,
                         "carme_user": owner[0] if owner else None, "carme_server": owner[1] if owner else None})
        return {"snapshot": self.jobs.health(), "job_name_prefix": self.job_name_prefix, "jobs": jobs}

    def nodes_document(self) -> dict:
        """The nodes, and their GPUs by type: "gpus" for the whole cluster ({type: {total, allocated,
        free, unavailable}}, untyped GPUs as "gpu" where no node has typed ones) and
        "gpus_by_partition" ({partition: {type: TypeCount}}, "" for any type)."""
        nodes = sorted(self.nodes.items.values(), key=lambda n: n.name)
        cluster = gpu_inventory(nodes, by_partition=False).get(WHOLE_CLUSTER, {})
        gpus = {t or "gpu": {"total": c.total, "allocated": c.in_use, "free": c.free, "unavailable": c.unavailable}
                for t, c in cluster.items() if t or len(cluster) == 1}
        by_partition = {p: {t: c.to_dict() for t, c in types.items()} for p, types in gpu_inventory(nodes).items()}
        return {"snapshot": self.nodes.health(), "nodes": [n.to_dict() for n in nodes], "gpus": gpus,
                "gpus_by_partition": by_partition}

    def reservations_document(self) -> dict:
        reservations = sorted(self.reservations.items.values(), key=lambda r: (r.start_time, r.name))
        return {"snapshot": self.reservations.health(), "reservations": [r.to_dict() for r in reservations]}

    def usage_document(self) -> dict:
        usage = sorted(self.usage.items.values(), key=lambda u: (u.account, u.user))
        return {"snapshot": self.usage.health(), "usage": [u.to_dict() for u in usage]}

    def recent_jobs_document(self) -> dict:
        jobs = sorted(self.recent_jobs.items.values(), key=lambda j: int(j.job_id.split("_")[0].split("+")[0] or 0))
        return {"snapshot": self.recent_jobs.health(), "jobs": [j.to_dict() for j in jobs]}


def _local_midnight() -> datetime:
    return datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
