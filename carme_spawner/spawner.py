"""CarmeSpawner: JupyterLab in an Apptainer container, as a SLURM job, one per server.

Thin on purpose: traitlets (the site's settings) and the lifecycle. Validation lives in
`options`, the script text in `batch_script`, SLURM's commands and formats in `slurm`, job state
in the one shared `job_reflector`, words for humans in `progress`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from batchspawner import SlurmSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Dict, Float, Integer, List, Unicode, default

from . import port_callback, progress, slurm, status_api
from .accounts import AccountError, JobAccount, resolve_account
from .form import defaults_from_last_choice, render_options_form
from .images import CatalogImage, images_from_catalog, images_from_setting, shared_catalog
from .batch_script import JobSite, render_batch_script
from .job_reflector import SlurmJobReflector
from .options import (
    OptionsError,
    PartitionPolicy,
    SpawnLimits,
    SpawnRequest,
    options_from_form_data,
    parse_options,
    validate_limits,
)


class SpawnFailed(web.HTTPError):
    """The job ended (or could not be submitted) before its server answered."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, log_message=message, reason="Spawn failed")
        self.message = message

    def __str__(self):
        return self.message


class CarmeSpawner(SlurmSpawner):
    """Start a user's server as a SLURM job running `apptainer exec ... jupyterhub-singleuser`."""

    # ---- SLURM and the shared watch -----------------------------------------------------------
    slurm_poll_interval = Float(
        5.0,
        config=True,
        help="Seconds between the hub's squeue calls. ONE call per interval serves every server.",
    )
    slurm_command_timeout = Float(30.0, config=True, help="Seconds before a SLURM command counts as failed.")
    slurm_stale_warning_after = Float(
        60.0,
        config=True,
        help="Warn (hub log, API status) once SLURM has not answered for this many seconds. "
        "Servers are never dropped for that: only a good SLURM answer can end them.",
    )
    job_name_prefix = Unicode(
        "carme-", config=True, help="Prefix of every Carme job name; the watch and reconciliation find jobs by it."
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
    container_runtime = Unicode(
        "apptainer", config=True, help="Container runtime command: apptainer or singularity (or a path to one)."
    )
    container_binds = List(
        Unicode(),
        ["{home}"],
        config=True,
        help="Bind specs for the container (src, src:dst or src:dst:ro); {home} and {username} are replaced.",
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

    @default("poll_interval")
    def _poll_interval_default(self):
        # poll() only reads the shared watch, so polling as often as it refreshes is free
        return self.slurm_poll_interval

    @default("cmd")
    def _cmd_default(self):
        return ["jupyterhub-singleuser"]

    # ---- per-instance state -------------------------------------------------------------------
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.submitted_at = 0.0  # time.time() of our sbatch; 0 for a job from before a hub restart
        self.spawn_request: SpawnRequest | None = None
        self.last_failure = ""
        self._port_wanted = False
        self._port_reported = asyncio.Event()
        self._reported_port = 0
        self._events: list[dict] = []
        self._events_changed = asyncio.Event()
        self._events_done = False

    def get_state(self):
        state = super().get_state()
        if self.last_failure:
            state["last_failure"] = self.last_failure
        return state

    def load_state(self, state):
        super().load_state(state)
        self.last_failure = state.get("last_failure", "")

    # ---- helpers --------------------------------------------------------------------------------
    @property
    def watch(self) -> SlurmJobReflector:
        return SlurmJobReflector.shared(
            interval=self.slurm_poll_interval,
            name_prefix=self.job_name_prefix,
            stale_warning_after=self.slurm_stale_warning_after,
            log=self.log,
        )

    def image_choices(self, account: JobAccount) -> list[CatalogImage]:
        """The images `account` may run: the catalog's entries for its role, else the `images` setting."""
        if not self.catalog_dir:
            return images_from_setting(self.images)
        source = shared_catalog(self.catalog_dir, self.user_catalog_dir or None, self.catalog_reload_interval, self.log)
        return images_from_catalog(source.current(), account.role, account.username)

    def spawn_limits(self, images: list[CatalogImage]) -> SpawnLimits:
        return validate_limits(
            SpawnLimits(
                partitions=tuple(PartitionPolicy(**p) for p in self.partitions),
                max_gpus=self.max_gpus,
                max_runtime_minutes=self.max_runtime_minutes,
                default_runtime_minutes=self.default_runtime_minutes,
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
            )
        )

    async def _render_options_form(self, spawner=None) -> str:
        """The options form: exactly the choices parse_options will accept for this user."""
        account = await self.job_account()
        images = self.image_choices(account)
        limits = self.spawn_limits(images)
        defaults = defaults_from_last_choice(self.user_options, limits, [i.choice for i in images])
        return render_options_form([i.choice for i in images], limits, defaults)

    @default("options_form")
    def _options_form_default(self):
        return self._render_options_form

    async def job_account(self) -> JobAccount:
        """The POSIX account (and Carme role) this server's job runs as."""
        auth_state = await self.user.get_auth_state() if hasattr(self.user, "get_auth_state") else None
        try:
            return resolve_account(self.user.name, auth_state, bool(getattr(self.user, "admin", False)))
        except AccountError as e:
            raise SpawnFailed(str(e), 403) from None

    def user_prefix(self, username: str) -> list[str]:
        return [part.replace("{username}", username) for part in self.user_command_prefix]

    def job_name(self) -> str:
        slug = slurm.server_slug(self.name)
        return f"{self.job_name_prefix}{self.user.name}" + (f"-{slug}" if slug else "")

    def job_site(self, account: JobAccount, env_names, image: CatalogImage) -> JobSite:
        fill = {"home": account.home, "username": account.username}
        return JobSite(
            job_name=self.job_name(),
            comment=slurm.job_comment(self.user.name, self.name),
            workdir=account.home,
            output_path=self.job_output.format(**fill),
            container_runtime=self.container_runtime,
            binds=tuple(b.format(**fill) for b in self.container_binds) + image.binds,
            container_env=image.env,
            export_env=tuple(sorted(env_names)),
            launcher=tuple(self.launcher_command),
            singleuser_cmd=tuple(self.cmd + self.get_args()),
            extra_sbatch=tuple(self.extra_sbatch_options),
        )

    def get_env(self):
        env = super().get_env()
        for name in self.job_env_keep:
            if name in os.environ:
                env.setdefault(name, os.environ[name])
        return env

    def options_from_form(self, formdata):
        return options_from_form_data(formdata)

    def _emit(self, message: str, percent: int) -> None:
        self.log.info("Spawn %s: %s", self._log_name, message)
        self._events.append({"progress": percent, "message": message})
        changed, self._events_changed = self._events_changed, asyncio.Event()
        changed.set()

    async def progress(self):
        seen = 0
        while True:
            while seen < len(self._events):
                yield self._events[seen]
                seen += 1
            if self._events_done:
                return
            await self._events_changed.wait()

    # ---- the port report (called by port_callback) ------------------------------------------------
    def accept_port_report(self, port: int) -> None:
        if not self._port_wanted:
            raise ValueError("this server is not waiting for a port report")
        if self._port_reported.is_set():
            raise ValueError("this server has already reported its port")
        self._reported_port = port
        self._port_reported.set()

    # ---- batchspawner's shell-command paths: closed ---------------------------------------------------
    # batchspawner formats command templates (exec_prefix, batch_*_cmd) into shell strings. Carme runs
    # SLURM as argv lists from carme_spawner.slurm only; these inherited entry points stay shut.
    def _no_shell(self, *args, **kwargs):
        raise NotImplementedError("CarmeSpawner runs SLURM commands as argv lists (carme_spawner.slurm), never through a shell")

    run_command = submit_batch_script = query_job_status = cancel_batch_job = _no_shell

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self):
        self._events, self._events_done = [], False
        self._port_reported = asyncio.Event()
        self.last_failure = ""
        try:
            return await self._start()
        except SpawnFailed as e:
            self.last_failure = e.message
            self._emit(f"Spawn failed: {e.message}", 100)
            raise
        finally:
            self._port_wanted = False
            self._events_done = True
            self._events_changed.set()

    async def _start(self):
        account = await self.job_account()
        images = self.image_choices(account)
        try:
            options = {k: v for k, v in (self.user_options or {}).items() if k not in self.wrapper_option_keys}
            request = parse_options(options, self.spawn_limits(images))
        except OptionsError as e:
            raise SpawnFailed(str(e), 400) from None
        self.spawn_request = request
        env = self.get_env()
        try:
            script = render_batch_script(
                request,
                self.job_site(account, env, next(i for i in images if i.choice.id == request.image_id)),
                template_dir=Path(self.batch_template_dir) if self.batch_template_dir else None,
            )
        except ValueError as e:  # the site's settings, not the user's options (those raised above)
            raise SpawnFailed(f"Carme is misconfigured, tell your admins: {e}") from None
        await self._prepare_output_dir(account)
        self.port = 0
        self._port_wanted = True
        self.submitted_at = time.time()
        submission = asyncio.ensure_future(
            slurm.sbatch(
                script,
                prefix=self.user_prefix(account.username),
                env=slurm.command_env(env),
                timeout=self.slurm_command_timeout,
            )
        )
        try:
            # shielded: a spawn cancelled mid-submission must still learn (and cancel) its job
            self.job_id = await asyncio.shield(submission)
        except asyncio.CancelledError:
            submission.add_done_callback(self._cancel_late_submission)
            raise
        except slurm.SlurmCommandError as e:
            self.job_id = ""
            raise SpawnFailed(f"SLURM refused the job: {e}") from None
        self._emit(
            f"Submitted SLURM job {self.job_id}: {request.gpus} GPU(s), {request.cpus} CPUs, "
            f"{request.memory_mb} MiB for {request.runtime_minutes} min on partition "
            f"{request.partition} ({request.routing_reason}).",
            10,
        )
        job = await self._wait_for_job_and_port()
        ip = await self.watch.node_address(job.batch_host or job.nodes)
        self._emit(f"JupyterLab reported port {self._reported_port} on {job.batch_host}; waiting for it to answer.", 80)
        await self._wait_for_http(ip, self._reported_port)
        self.ip, self.port = ip, self._reported_port
        self.log.info("Server %s: job %s serves at %s:%s", self._log_name, self.job_id, ip, self.port)
        return ip, self.port

    def _job_over(self, view) -> bool:
        """SLURM says so: the job ended, or a snapshot begun after submission lacks it."""
        return (view.job is not None and view.job.is_terminal) or view.known_gone(self.submitted_at)

    def _cancel_late_submission(self, submission: asyncio.Future) -> None:
        if submission.cancelled() or submission.exception() is not None:
            return
        job_id = submission.result()
        self.log.warning("Spawn of %s was cancelled while job %s was submitted: cancelling it", self._log_name, job_id)
        asyncio.ensure_future(slurm.scancel(job_id, timeout=self.slurm_command_timeout))

    async def _wait_for_job_and_port(self) -> slurm.SlurmJob:
        """Follow the job through the watch until it runs and has reported its port, or ends."""
        last_message = ""
        port_wait = asyncio.ensure_future(self._port_reported.wait())
        try:
            while True:
                view = self.watch.view(self.job_id)
                job = view.job
                if self._job_over(view):
                    raise SpawnFailed(await self._failure_text(job))
                if job is not None:
                    if job.is_running and self._port_reported.is_set():
                        return job
                    message = progress.describe_pending(job, time.time()) if job.is_pending else (
                        progress.describe_running(job)
                    )
                    if message != last_message:
                        self._emit(message, 30 if job.is_pending else 60)
                        last_message = message
                # worth an early squeue: the first state of a new job, and the one after its port
                # report (the job runs now); other changes come with the regular interval
                kick = view.snapshot_started <= self.submitted_at or self._port_reported.is_set()
                change = asyncio.ensure_future(self.watch.wait_for_snapshot(view.snapshot_started, kick=kick))
                # once the port is in, only a new snapshot is news (a done port_wait would spin the loop)
                await asyncio.wait({change} if port_wait.done() else {change, port_wait}, return_when=asyncio.FIRST_COMPLETED)
                change.cancel()
        finally:
            port_wait.cancel()

    async def _wait_for_http(self, ip: str, port: int) -> None:
        """Return once the server answers HTTP; fail at once if its job ends first."""
        url = f"http://{ip}:{port}{self.server.base_url if self.server else '/'}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            try:
                await client.fetch(HTTPRequest(url, request_timeout=3, follow_redirects=False))
                return
            except HTTPClientError as e:
                if e.code != 599:  # any HTTP answer means the server is up
                    return
            except OSError:
                pass
            view = self.watch.view(self.job_id)
            if self._job_over(view):
                raise SpawnFailed(await self._failure_text(view.job))
            await asyncio.sleep(0.5)
        raise SpawnFailed(f"JupyterLab in job {self.job_id} did not answer within {self.http_timeout} s")

    async def _failure_text(self, job: slurm.SlurmJob | None) -> str:
        text = progress.describe_end(job, self.job_id)
        tail = await self._log_tail(job)
        return f"{text}\nLast lines of the job's output:\n{tail}" if tail else text

    async def _prepare_output_dir(self, account: JobAccount) -> None:
        directory = str(Path(self.job_output.format(home=account.home, username=account.username)).parent)
        try:
            await slurm.run_command(
                [*self.user_prefix(account.username), "mkdir", "-p", "-m", "0700", directory],
                env=slurm.command_env(),
                timeout=self.slurm_command_timeout,
            )
        except slurm.SlurmCommandError as e:
            raise SpawnFailed(f"cannot create the job output directory {directory}: {e}") from None

    async def _log_tail(self, job: slurm.SlurmJob | None) -> str:
        """The end of the job's output, read AS THE USER (the path is the user's to choose)."""
        if job is None or not job.output_path:
            return ""
        try:
            out = await slurm.run_command(
                [*self.user_prefix(job.user or self.user.name), "tail", "-n", str(self.log_tail_lines), "--", job.output_path],
                env=slurm.command_env(),
                timeout=10,
            )
        except slurm.SlurmCommandError as e:
            self.log.info("no log tail for job %s: %s", job.job_id, e)
            return ""
        return out[-4000:]

    async def poll(self):
        """None while the job is alive or its state is unknown; an exit status once SLURM says it ended."""
        if not self.job_id:
            return 0
        watch = self.watch
        if watch.snapshot_started == 0:
            await watch.wait_for_snapshot(0, timeout=self.slurm_command_timeout)
        view = watch.view(self.job_id)
        if view.job is not None and not view.job.is_terminal:
            return None
        if view.job is None and not view.known_gone(self.submitted_at):
            return None  # SLURM has not answered since: doubt is not evidence
        self.last_failure = progress.describe_end(view.job, self.job_id)
        self.log.warning("Server %s stopped: %s", self._log_name, self.last_failure)
        status = (view.job.exit_status if view.job else None) or 1
        self.job_id = ""
        return status

    async def stop(self, now=False):
        if not self.job_id:
            return
        job_id = self.job_id
        self.log.info("Stopping server %s: scancel %s", self._log_name, job_id)
        try:
            await slurm.scancel(job_id, timeout=self.slurm_command_timeout)
        except slurm.SlurmCommandError as e:
            self.log.warning("scancel %s failed: %s", job_id, e)
        if now:
            return
        asked = time.time()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not await self.watch.wait_for_snapshot(asked, timeout=max(1.0, deadline - time.monotonic())):
                break
            view = self.watch.view(job_id)
            if view.job is None or view.job.is_terminal:
                return
            asked = view.snapshot_started
        self.log.warning("Job %s of %s did not end within 30 s of scancel", job_id, self._log_name)


# the hub serves Carme's port callback (replacing batchspawner's) and status API as soon as the
# spawner class is loaded by JupyterHub's config
port_callback.install()
status_api.install()
