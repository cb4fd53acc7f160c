"""The settings of CarmeSpawner (traitlets, each with its help) and the limits built from them.

A mixin of the spawner, like `carme_auth.settings` of the authenticator: the values live in the
`CarmeSpawner:` section of the site settings file. SLURM's own settings (intervals, time-outs,
the job-name prefix) are the hub's view's: section `SlurmView:`.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from traitlets import Dict, Float, Integer, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from carme_quota.limits import Limits
from carme_slurm import job_comment
from carme_slurm.gpu_inventory import TypeCount, type_memory_gb
from carme_slurm.scratch import (
    ScratchLayout,
    layout_from_settings,
    scratch_capacity_mb,
    scratch_words,
    session_words,
)

from .accounts import DENIED_USERS, JobAccount
from .batch_script import JobSite
from .form import ImageChoice
from .images import CatalogImage
from .mounts import MountMissing, bind_specs, missing_sources, mounts_for, parse_mounts
from .options import PartitionPolicy, SpawnLimits, validate_limits


class CarmeSpawnerSettings(LoggingConfigurable):
    # ---- SLURM (the intervals and the job-name prefix are SlurmView's) -----------------------------
    min_uid = Integer(
        1000,
        config=True,
        help="The lowest uid a job may run as: root and the system accounts are below it. A spawn for an "
        "account below it is refused (403) before anything reaches SLURM.",
    )
    denied_users = List(
        Unicode(),
        list(DENIED_USERS),
        config=True,
        help="Account names no job may run as, whatever their uid (root and the daemon accounts by default).",
    )
    user_command_prefix = List(
        Unicode(),
        ["runuser", "-u", "{username}", "--"],
        config=True,
        help="argv prefix that runs sbatch (and the log reader) as the user; {username} is replaced. "
        "Set from configuration only: nothing at run time can change it.",
    )

    # ---- resources and limits -----------------------------------------------------------------
    partitions = List(
        Dict(),
        [
            {"name": "interactive", "max_gpus": 2, "max_runtime_minutes": 480, "description": "instant access"},
            {"name": "batch", "max_gpus": 8, "max_runtime_minutes": 7 * 24 * 60, "description": "long and large jobs"},
        ],
        config=True,
        help="Partitions users may choose: dicts with name, max_gpus, max_runtime_minutes, description.",
    )
    max_gpus = Integer(4, config=True, help="Most GPUs one server may ask for (the quota issue refines this per user).")
    max_runtime_minutes = Integer(7 * 24 * 60, config=True, help="Longest runtime one server may ask for, in minutes.")
    default_runtime_minutes = Integer(60, config=True, help="Runtime when the user names none, in minutes.")
    cpus_per_gpu = Integer(4, config=True, help="CPU cores given per requested GPU.")
    memory_mb_per_gpu = Integer(16384, config=True, help="Memory (MiB) given per requested GPU.")
    min_cpus = Integer(1, config=True, help="CPU cores for a server without GPUs (and the least for any).")
    min_memory_mb = Integer(2048, config=True, help="Memory (MiB) for a server without GPUs (and the least for any).")
    interactive_max_gpus = Integer(
        2, config=True, help="Requests with at most this many GPUs (and short enough) go to the small partition."
    )
    interactive_max_runtime_minutes = Integer(
        480, config=True, help="Requests at most this long (and small enough) go to the small partition."
    )
    routing_small_partition = Unicode("interactive", config=True, help="Partition for small, short requests.")
    routing_large_partition = Unicode("batch", config=True, help="Partition for larger or longer requests.")

    # ---- the container ------------------------------------------------------------------------
    images = Dict(
        {},
        config=True,
        help="Container images users may run: {id: reference}, the reference an absolute .sif path or a "
        "docker:// / oras:// / library:// URI. Used only when no catalog_dir is set (the catalog replaces it).",
    )
    default_image = Unicode("", config=True, help="Image id used when the user names none.")
    catalog_dir = Unicode(
        "",
        config=True,
        help="Directory of the site's container catalog (YAML files, see container_catalog). When set, the "
        "catalog replaces `images`: users see and may run exactly the enabled entries their role allows.",
    )
    user_catalog_dir = Unicode(
        "", config=True, help="Directory of user-defined catalog entries (written by the carme-catalog service)."
    )
    catalog_reload_interval = Float(5.0, config=True, help="Seconds between checks of the catalog files for changes.")
    user_image_schemes = List(
        Unicode(),
        ["file"],
        config=True,
        help="Schemes of user-defined images still allowed today (the carme-catalog service's setting, passed "
        "on by its wiring): stored entries are re-checked at every load.",
    )
    user_image_prefixes = List(
        Unicode(),
        [],
        config=True,
        help="Prefixes user-defined images must still start with ({username}: the entry's owner); the "
        "carme-catalog service's setting, passed on by its wiring.",
    )
    container_runtime = Unicode(
        "apptainer", config=True, help="Container runtime command: apptainer or singularity (or a path to one)."
    )
    container_binds = List(
        Unicode(),
        ["{home}"],
        config=True,
        help="Bind specs for the container (src, src:dst or src:dst:ro); {home} and {username} are replaced.",
    )
    mounts = List(
        config=True,
        help="The site's file systems in every user's container: a list of {source, target, read_only, roles, "
        "groups, projects, required}, e.g. {source: /beegfs/projects/vision, target: /projects/vision, "
        "projects: [vision]}. {username} and {home} are filled in; roles, groups (hub groups) and projects "
        "(quota projects) narrow who gets one; a missing required source fails the spawn naming it. Checked "
        "at hub start (absolute, no '..', never onto the container's system paths). See carme_spawner.mounts.",
    )
    job_output = Unicode(
        "{home}/.carme/jobs/carme-%j.log",
        config=True,
        help="The job's output file; {home}/{username} are replaced, SLURM replaces %j. "
        "Its directory is created as the user before submission.",
    )
    launcher_command = List(
        Unicode(),
        [sys.executable, "-m", "carme_spawner.launcher", "--"],
        config=True,
        help="argv run on the node before the container: reports the port, then execs the container command.",
    )
    batch_template_dir = Unicode(
        "", config=True, help="Directory with a site's own carme_job.sh.j2 (default: Carme's slurm_templates/)."
    )
    extra_sbatch_options = List(
        Unicode(), [], config=True, help='Extra sbatch options for every job, e.g. ["--qos=interactive"].'
    )
    job_env_keep = List(
        Unicode(),
        ["PATH", "LANG", "LC_ALL"],
        config=True,
        help="Variables of the hub's environment passed into every job (added to Spawner.env_keep): the "
        "job needs a PATH on the node to find the container runtime, and JupyterHub 5+ keeps none by default.",
    )
    wrapper_option_keys = List(
        Unicode(),
        ["profile"],
        config=True,
        help="user_options keys that belong to a wrapping spawner, not to Carme (wrapspawner's "
        "ProfilesSpawner adds 'profile'); they are dropped before validation, every other unknown key is refused.",
    )
    log_tail_lines = Integer(20, config=True, help="Lines of the job's output shown when a spawn fails.")
    gpu_type_memory_gb = Dict(
        key_trait=Unicode(),
        value_trait=Float(),
        config=True,
        help="GPU memory in GB per SLURM GPU type, e.g. {a100: 80, v100: 32}, for images whose catalog entry "
        "asks for min_gpu_memory_gb (MIG slices named like 1g.10gb need no entry: the name says 10).",
    )
    estimate_timeout = Float(
        10.0, config=True,
        help="Seconds the form's start estimate (sbatch --test-only as the user) may take before it says "
        "the estimate is unavailable.",
    )
    booking_url = Unicode(
        "", config=True,
        help="Where users book GPUs ahead (the carme-reservations service's page, below the hub's base URL, "
        "e.g. services/carme-reservations/); the form links to it next to the reservation choice. Set by "
        "that service's wiring; empty: no link.",
    )
    estimate_cache_seconds = Float(
        30.0, config=True,
        help="Seconds one estimate is kept per user and distinct request (the form asks as fields change).",
    )
    start_gate_dir = Unicode(
        "/dev/shm/carme-start-gate",
        config=True,
        help="Node-local directory of the start gate: at most as many servers as the node has CPUs start "
        "(import, load extensions) at once, the others wait for a slot (an flock on a file here) until "
        "one is up, so in a login storm they answer one after another instead of all at the end. "
        "Created by the first job (mode 1777) unless the site creates it; '' turns the gate off.",
    )
    services_url = Unicode(
        "",
        config=True,
        help="Where a session reaches the hub's services (the Carme lab extension in JupyterLab asks "
        "carme-sessions and carme-culler there, with the session's own token), as $CARME_SERVICES_URL, e.g. "
        "https://carme.example.org/services/. Default: JupyterHub.public_url, else the proxy's bind URL, "
        "each + services/ (a wildcard bind address becomes this host's name).",
    )
    start_gate_wait = Float(
        30.0,
        config=True,
        help="Seconds a server waits at most for a start slot (then it starts anyway), and holds one at "
        "most until its port opens.",
    )

    @validate("mounts")
    def _check_mounts(self, proposal):
        try:
            parse_mounts(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    scratch = Dict(
        config=True,
        help="The jobs' scratch, as Carme's prolog makes it (carme_slurm.scratch.ScratchLayout's fields: node_dir, "
        "container_path, beeond, ...). Set by the carme-scratch service's wiring from its settings; empty: no scratch.",
    )

    @validate("scratch")
    def _check_scratch(self, proposal):
        try:
            layout_from_settings(proposal["value"]) if proposal["value"] else None
        except (ValueError, TypeError) as e:
            raise TraitError(f"CarmeSpawner.scratch.{e}") from None
        return proposal["value"]

    scratch_default_gib = Integer(
        0,
        config=True,
        help="The scratch size (GiB) a server asks for when its user names none: sbatch --tmp, so SLURM "
        "places the job on a node with that much TmpDisk (lowered to the user's scratch_gib limit and the "
        "partition's largest node); 0: none, any node. Set by the carme-scratch service's wiring from its "
        "default_gib; only with a scratch.",
    )

    @validate("scratch_default_gib")
    def _check_scratch_default_gib(self, proposal):
        if not 0 <= proposal.value <= 1_000_000:
            raise TraitError(f"CarmeSpawner.scratch_default_gib must be 0..1000000 GiB, not {proposal.value}")
        return proposal.value

    def scratch_layout(self) -> ScratchLayout | None:
        return layout_from_settings(self.scratch) if self.scratch else None

    def scratch_line(self, nodes) -> str:
        """The form's words on the job's scratch ("" without one); sizes from the nodes' TmpDisk."""
        layout = self.scratch_layout()
        return scratch_words(layout, {n.name: n.tmp_disk_mb for n in nodes}) if layout else ""

    def scratch_session_line(self, node: str, asked_gib: int) -> str:
        """The running server's words on its scratch ("" without one); the size is its node's TmpDisk."""
        layout = self.scratch_layout()
        if not layout or not node:
            return ""
        known = self.view.nodes.items.get(node)
        return session_words(layout, node, known.tmp_disk_mb if known else 0, asked_gib)

    def scratch_capacity(self) -> dict[str, int] | None:
        """The largest TmpDisk by partition from the hub's view's last nodes snapshot (no SLURM call);
        None before the first one (then SLURM alone judges scratch sizes)."""
        nodes = self.view.nodes
        return scratch_capacity_mb(nodes.items.values()) if nodes.snapshot_started else None

    def job_site(self, account: JobAccount, env_names, image: CatalogImage, project: str | None = None,
                 mounts: tuple[str, ...] = ()) -> JobSite:
        """The site's side of the batch script (this spawner's settings, the user's account and image)."""
        fill = {"home": account.home, "username": account.username}
        return JobSite(
            job_name=self.job_name(),
            comment=job_comment(self.user.name, self.name),
            workdir=account.home,
            output_path=self.job_output.format(**fill),
            container_runtime=self.container_runtime,
            binds=tuple(b.format(**fill) for b in self.container_binds) + mounts + image.binds,
            container_env=image.env,
            export_env=tuple(sorted(env_names)),
            launcher=tuple(self.launcher_command),
            singleuser_cmd=tuple(self.cmd + self.get_args()),
            extra_sbatch=tuple(self.extra_sbatch_options),
            account=project or self.quota.account,
            scratch=self.scratch_layout(),
        )

    def mount_binds(self, account: JobAccount, groups: Iterable[str], projects: Iterable[str]) -> tuple[str, ...]:
        """The --bind specs of the mounts `account`'s container gets (its role, hub groups and quota
        projects decide); MountMissing names a required source that is not there."""
        mounts = mounts_for(parse_mounts(self.mounts), account.role, groups, projects,
                            {"username": account.username, "home": account.home})
        missing = missing_sources(mounts)
        if missing:
            raise MountMissing(f"{missing[0]} is not there (a file system your server needs): tell your admins")
        return bind_specs(mounts)

    @validate("start_gate_dir")
    def _check_start_gate_dir(self, proposal):
        if proposal.value and not proposal.value.startswith("/"):
            raise ValueError(f"CarmeSpawner.start_gate_dir must be an absolute path or '', not {proposal.value!r}")
        return proposal.value

    @validate("start_gate_wait")
    def _check_start_gate_wait(self, proposal):
        if not 0 < proposal.value <= 3600:
            raise ValueError(f"CarmeSpawner.start_gate_wait must be > 0 and <= 3600 s, not {proposal.value}")
        return proposal.value

    def jobs_services_url(self, public_url: str, bind_url: str) -> str:
        """services_url, or the one made from the hub's public URL, else its proxy's bind URL."""
        if self.services_url:
            return self.services_url
        url = urlsplit(public_url or bind_url)
        host = url.hostname or ""
        if host in ("", "0.0.0.0", "::"):
            host = socket.getfqdn()
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{url.port}" if url.port else ""
        return urlunsplit((url.scheme or "http", netloc, url.path.rstrip("/") + "/services/", "", ""))

    def spawn_limits(self, images: list[CatalogImage], quota: Limits | None = None,
                     projects: tuple[str, ...] = (), gpus: Mapping[str, Mapping[str, TypeCount]] | None = None,
                     refused_reservations: Mapping[str, str] | None = None,
                     scratch_capacity: Mapping[str, int] | None = None) -> SpawnLimits:
        """The form's and the options' limits: the site's, lowered to the user's quota where it is lower;
        the GPU types from `gpus` (gpu_inventory of the hub's view; None: not known); the
        reservations SLURM would refuse this user (from the view); the scratch sizes the partitions'
        nodes can give (`scratch_capacity`; None: not known)."""
        quota = quota or Limits()
        max_gpus = min(self.max_gpus, quota.gpus_per_job if quota.gpus_per_job is not None else self.max_gpus)
        max_runtime = max(1, min(self.max_runtime_minutes, quota.max_runtime_minutes or self.max_runtime_minutes))
        return validate_limits(
            SpawnLimits(
                partitions=tuple(PartitionPolicy(**p) for p in self.partitions),
                max_gpus=max_gpus,
                max_runtime_minutes=max_runtime,
                default_runtime_minutes=min(self.default_runtime_minutes, max_runtime),
                cpus_per_gpu=self.cpus_per_gpu,
                memory_mb_per_gpu=self.memory_mb_per_gpu,
                min_cpus=self.min_cpus,
                min_memory_mb=self.min_memory_mb,
                interactive_max_gpus=self.interactive_max_gpus,
                interactive_max_runtime_minutes=self.interactive_max_runtime_minutes,
                routing_small_partition=self.routing_small_partition,
                routing_large_partition=self.routing_large_partition,
                allowed_images={i.choice.id: i.reference for i in images},
                default_image=self.default_image,
                image_gpu={i.choice.id: i.choice.gpu for i in images},
                projects=projects,
                gpu_capacity={p: {t: c.most_on_a_node for t, c in types.items()} for p, types in (gpus or {}).items()},
                image_gpu_types={i.choice.id: self.image_gpu_types(i.choice, gpus or {}) for i in images},
                image_interfaces={i.choice.id: tuple(name for name, _ in i.choice.interfaces) for i in images},
                refused_reservations=refused_reservations or {},
                scratch=bool(self.scratch),
                max_scratch_gib=quota.scratch_gib,
                default_scratch_gib=self.scratch_default_gib,
                scratch_capacity_mb=scratch_capacity or {},
            )
        )

    def image_gpu_types(self, choice: ImageChoice, gpus: Mapping[str, Mapping[str, TypeCount]]) -> tuple[str, ...]:
        """The GPU types `choice` may run on: the ones it names, and of those (or of the cluster's
        types) the ones with at least its minimum GPU memory; () for any type."""
        named = choice.gpu_types
        if not choice.min_gpu_memory_gb:
            return named
        known = named or tuple(sorted({t for types in gpus.values() for t in types if t}))
        big_enough = tuple(t for t in known if (type_memory_gb(t, self.gpu_type_memory_gb) or 0) >= choice.min_gpu_memory_gb)
        return big_enough or (f"(none with {choice.min_gpu_memory_gb} GB or more)",)


def check_at_hub_start(section: Mapping, source: str) -> None:
    """What a spawner checks when it is made, checked once as the hub starts: a bad mount or scratch
    setting stops the hub (SystemExit naming the settings file and key) instead of failing every spawn."""
    try:
        parse_mounts(section.get("mounts") or [])  # its messages name CarmeSpawner.mounts[i].key
    except ValueError as e:
        raise SystemExit(f"{source}: {e}") from None
    if section.get("scratch"):
        try:
            layout_from_settings(dict(section["scratch"]))
        except (ValueError, TypeError) as e:
            raise SystemExit(f"{source}: CarmeSpawner.scratch.{e}") from None
