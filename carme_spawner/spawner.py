"""CarmeSpawner: JupyterLab in an Apptainer container, as a SLURM job, one per server.

Thin on purpose: traitlets (the site's settings) and the lifecycle, a pipeline

    apply_user_options: parse (the one validation, `options`)        -> SpawnRequest, or 400
    start:              admit (quotas) -> render (`batch_script`) -> submit (sbatch as the user)
                        -> follow (`job_follow`, through the hub's one SLURM view)

SLURM's commands and formats live in `carme_slurm`, words for humans in `progress`.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from batchspawner import SlurmSpawner
from jupyterhub import orm
from tornado import web
from traitlets import default

from carme_core.roles import ADMIN, POWER, CarmeRoles, role_from_hub
from carme_quota.admission import Refusal, Usage, admit, explain_slurm_refusal
from carme_quota.budget import budget_warning, runtime_that_fits
from carme_quota.disk import over_words
from carme_quota.explain import disk_lines, form_lines
from carme_quota.limits import Limits, ProjectTemplate, effective_limits
from carme_quota.settings import CarmeQuota
from carme_quota.stored import stored_quota
from carme_slurm import (
    SlurmCommandError,
    SlurmView,
    command_env,
    hub_api,
    run_command,
    sbatch,
    scancel,
    server_slug,
)
from carme_slurm.gpu_inventory import gpu_inventory
from container_catalog import UserEntryRules, web_apps

from . import expected_start, port_callback, progress
from .accounts import AccountError, JobAccount, resolve_account
from .admission import HUB_ADMISSION, QUOTA_REFUSALS
from .batch_script import render_batch_script
from .form import defaults_from_last_choice, render_options_form
from .images import (
    CatalogImage,
    images_from_catalog,
    images_from_setting,
    shared_catalog,
)
from .job_follow import JobEnded, JobFollower
from .mounts import MountMissing
from .prepared import PreparedSpawn, UserQuota
from .reservation_choice import minutes_left, refused_reservations, reservation_choices
from .options import (
    OptionsError,
    SpawnLimits,
    SpawnRequest,
    format_duration,
    options_from_form_data,
    parse_options,
)
from .settings import CarmeSpawnerSettings
from .spawn_steps import SpawnSteps, log_steps_once_routed


START_TIMEOUT_MARGIN = 5.0  # a hung start fails this early, its words before the hub's bare timeout


class SpawnFailed(web.HTTPError):
    """The job ended (or could not be submitted) before its server answered."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, log_message=message, reason="Spawn failed")
        self.message = message

    def __str__(self):
        return self.message


class CarmeSpawner(SlurmSpawner, CarmeSpawnerSettings):
    """Start a user's server as a SLURM job running `apptainer exec ... jupyterhub-singleuser`.

    Its settings (section `CarmeSpawner:`) are those of `CarmeSpawnerSettings`."""

    _start_began = 0.0  # time.monotonic() when start() began: a hung start fails before start_timeout

    @default("poll_interval")
    def _poll_interval_default(self):
        # poll() only reads the shared view, so polling as often as it refreshes is free
        return SlurmView(config=self.config).job_interval

    @default("apply_user_options")
    def _apply_user_options_default(self):
        return apply_carme_options

    @default("cmd")
    def _cmd_default(self):
        return ["jupyterhub-singleuser"]

    # ---- per-instance state -------------------------------------------------------------------
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.submitted_at = self.accepted_at = 0.0  # sbatch began / returned (a snapshot begun after that must
        # list the job: only then is its absence evidence); 0 for a job from before a hub restart
        self.spawn_request: SpawnRequest | None = None
        self.last_failure = ""
        self._prepared: PreparedSpawn | None = None
        self.steps = SpawnSteps()
        self._timing: asyncio.Future | None = None
        self._port_wanted = False
        self._port_reported = asyncio.Event()
        self._reported_port = 0
        self._events: list[dict] = []
        self._events_changed = asyncio.Event()
        self._events_done = False
        self._route_added = asyncio.Event()
        self.interfaces: list[list[str]] = []  # [name, title] of the running server's web interfaces

    # JupyterHub sets _proxy_pending while it adds the server's route and clears it when done (also
    # after a failed add, once it has stopped the server): the moment of "proxy route added"
    _route_pending = False

    @property
    def _proxy_pending(self) -> bool:
        return self._route_pending

    @_proxy_pending.setter
    def _proxy_pending(self, pending: bool) -> None:
        was, self._route_pending = self._route_pending, pending
        if was and not pending and self.server is not None and not self._stop_pending:
            self.steps.mark("proxy route added")
            self._route_added.set()

    def get_state(self):
        state = super().get_state()
        if self.last_failure:
            state["last_failure"] = self.last_failure
        if self.interfaces and self.job_id:  # the session cards link each one (not kept once it stopped)
            state["interfaces"] = self.interfaces
        job = SlurmView.current().jobs.items.get(str(self.job_id)) if self.job_id and SlurmView.current() else None
        if job is not None and job.is_running:  # for JupyterHub's admin panel (image, GPUs: user_options)
            state["node"], state["ends_at"] = job.batch_host, job.end_time
        return state

    def load_state(self, state):
        super().load_state(state)
        self.last_failure = state.get("last_failure", "")
        self.interfaces = list(state.get("interfaces") or [])

    # ---- who, what, where ---------------------------------------------------------------------------
    @property
    def view(self) -> SlurmView:
        """The hub's one view of SLURM (shared by every server and service)."""
        return SlurmView.shared(config=self.config, log=self.log)

    @property
    def quota(self) -> CarmeQuota:
        return CarmeQuota(config=self.config)

    async def user_quota(self, account: JobAccount, project: object = None) -> UserQuota:
        """The user's effective limits for a server in `project` (their own account if None or not
        theirs), the projects they may choose, and that project's template: one read of the store."""
        quota = self.quota
        stored = await stored_quota(quota.db_url, self.user.name, project, self.log)
        limits = effective_limits(quota.role_default(account.role), stored.template, stored.override)
        return UserQuota(limits, stored.projects, stored.template, stored.disk)

    def role(self) -> str:
        groups = [g.name for g in getattr(self.user, "groups", None) or ()]
        return role_from_hub(bool(getattr(self.user, "admin", False)), groups, CarmeRoles(config=self.config).power_groups)

    async def job_account(self) -> JobAccount:
        """The POSIX account (with the user's Carme role) this server's job runs as."""
        auth_state = await self.user.get_auth_state() if hasattr(self.user, "get_auth_state") else None
        try:
            return resolve_account(self.user.name, auth_state, self.role(), min_uid=self.min_uid,
                                   denied_users=tuple(self.denied_users))
        except AccountError as e:
            raise SpawnFailed(str(e), 403) from None

    async def image_choices(self, account: JobAccount) -> list[CatalogImage]:
        """The images `account` may run: the catalog's entries for its role, else the `images` setting."""
        if not self.catalog_dir:
            return images_from_setting(self.images)
        rules = UserEntryRules(tuple(self.user_image_schemes), tuple(self.user_image_prefixes))
        source = shared_catalog(self.catalog_dir, self.user_catalog_dir or None, self.catalog_reload_interval,
                                self.log, user_rules=rules)
        # the files' check (due every catalog_reload_interval) runs in a worker thread, never on the loop
        catalog = await asyncio.to_thread(source.current)
        return images_from_catalog(catalog, account.role, account.username,
                                   owner_may_share=self.owner_may_share)

    def owner_may_share(self, owner: str) -> bool:
        """May `owner`'s own and shared images be offered? Only while the hub still makes them a power
        user or an admin (a demoted user's entries stop being served at once)."""
        db = getattr(self.user, "db", None)
        if db is None:
            return False
        # queried, not read from cached objects: a group change made a moment ago counts now
        admin = db.query(orm.User.admin).filter(orm.User.name == owner).scalar()
        if admin is None:
            return False
        groups = [name for (name,) in db.query(orm.Group.name).join(orm.Group.users).filter(orm.User.name == owner)]
        return role_from_hub(admin, groups, CarmeRoles(config=self.config).power_groups) in (POWER, ADMIN)

    async def _render_options_form(self, spawner=None) -> str:
        """The options form: exactly the choices parse_options will accept for this user."""
        account = await self.job_account()
        images = await self.image_choices(account)
        quota, projects, _, disk = await self.user_quota(account)
        gpus = self.gpu_inventory()
        # SLURM knows the job's user by the account it runs as
        limits = self.spawn_limits(images, quota, projects, gpus, refused_reservations(self.reservations(), account.username),
                                   self.scratch_capacity())
        reservations = reservation_choices(self.reservations(), account.username, time.time())
        defaults = defaults_from_last_choice(self.user_options, limits, [i.choice for i in images], reservations)
        age = time.time() - self.view.nodes.snapshot_started if gpus is not None else None
        estimate = f"{self.hub.base_url}api/carme/expected-start/users/{quote(self.user.name, safe='')}"
        if self.name:
            estimate += f"/servers/{quote(self.name, safe='')}"
        return render_options_form([i.choice for i in images], limits, defaults,
                                   quota_lines=await self.quota_lines(account, quota, projects) + disk_lines(disk),
                                   gpus=gpus, gpus_age_seconds=age, estimate_url=estimate,
                                   reservations=reservations, now=time.time(),
                                   scratch_line=self.scratch_line(self.view.nodes.items.values()),
                                   booking_url=self.booking_url and self.hub.base_url.rsplit("hub/", 1)[0] + self.booking_url)

    def reservations(self) -> list:
        """SLURM's reservations in the view's last snapshot (no SLURM call)."""
        return list(self.view.reservations.items.values())

    def gpu_inventory(self) -> dict | None:
        """The cluster's GPUs by partition and type from the view's last nodes snapshot (no SLURM
        call); None before the first one (then SLURM alone judges GPU types)."""
        nodes = self.view.nodes
        return gpu_inventory(nodes.items.values()) if nodes.snapshot_started else None

    async def quota_lines(self, account: JobAccount, quota: Limits, projects: tuple[str, ...]) -> list[str]:
        """The user's limits and use in words, for the form (from the hub's view: no SLURM call)."""
        settings = self.quota
        usage = HUB_ADMISSION.usage(self.view, account.username, settings.account or self._only_account(account.username),
                                    self.view.job_name_prefix, settings.usage_reset_period)
        per_project = {p: (await self.user_quota(account, p)).limits.gpus_per_job for p in projects}
        return form_lines(quota, usage, settings.usage_reset_period, per_project)

    @default("options_form")
    def _options_form_default(self):
        return self._render_options_form

    def options_from_form(self, formdata):
        return options_from_form_data(formdata)

    def user_prefix(self, username: str) -> list[str]:
        return [part.replace("{username}", username) for part in self.user_command_prefix]

    def job_name(self) -> str:
        slug = server_slug(self.name)
        return f"{self.view.job_name_prefix}{self.user.name}" + (f"-{slug}" if slug else "")

    def get_env(self):
        env = super().get_env()
        for name in self.job_env_keep:
            if name in os.environ:
                env.setdefault(name, os.environ[name])
        public, proxy = self.user.settings.get("public_url") or "", self.user.settings.get("proxy")
        env["CARME_SERVICES_URL"] = self.jobs_services_url(public and public.geturl(), getattr(proxy, "public_url", ""))
        if self.start_gate_dir:  # read by the launcher on the node
            env["CARME_START_GATE_DIR"] = self.start_gate_dir
            env["CARME_START_GATE_WAIT"] = f"{self.start_gate_wait:g}"
        if self._prepared is not None:  # the image's web apps (carme_lab.apps), the one opened first
            env.update(web_apps.session_env(self._prepared.image.interfaces, self._prepared.request.open_first))
            self.interfaces = [[i.name, i.title] for i in self._prepared.image.interfaces]  # for the cards
        return env

    def _emit(self, message: str, percent: int) -> None:
        self.log.info("Spawn %s: %s", self._log_name, message)
        self._events.append({"progress": percent, "message": message, "carme_steps": self.steps.as_dict()})
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
        self.steps.mark("port reported")
        self._port_reported.set()

    # ---- batchspawner's shell-command paths: closed ---------------------------------------------------
    # batchspawner formats command templates (exec_prefix, batch_*_cmd) into shell strings. Carme runs
    # SLURM as argv lists from carme_slurm only; these inherited entry points stay shut.
    def _no_shell(self, *args, **kwargs):
        raise NotImplementedError("CarmeSpawner runs SLURM commands as argv lists (carme_slurm), never through a shell")

    run_command = submit_batch_script = query_job_status = cancel_batch_job = _no_shell

    # ---- the pipeline -------------------------------------------------------------------------------
    async def prepare(self, user_options) -> PreparedSpawn:
        """parse: the user's options, for this user's account, role and images (400 naming the field)."""
        self.steps = SpawnSteps()  # the spawn is requested now
        self._route_added = asyncio.Event()
        prepared = await self.parse_request(user_options)
        self.steps.mark("options parsed")
        return prepared

    async def parse_request(self, user_options) -> PreparedSpawn:
        """The user's options checked for this user's account, role, images, quota and the cluster's
        GPUs: a spawn's (prepare) and an estimate's (expected_start) one way."""
        account = await self.job_account()
        images = await self.image_choices(account)
        options = {k: v for k, v in (user_options or {}).items() if k not in self.wrapper_option_keys}
        quota = await self.user_quota(account, options.get("project"))
        limits = self.spawn_limits(images, quota.limits, quota.projects, self.gpu_inventory(),
                                   refused_reservations(self.reservations(), account.username), self.scratch_capacity())
        return self._parsed(account, images, options, limits, quota)

    def _parsed(self, account: JobAccount, images, options: dict, limits: SpawnLimits,
                quota: UserQuota) -> PreparedSpawn:
        try:
            request = parse_options(options, limits)
        except OptionsError as e:
            raise SpawnFailed(str(e), 400) from None
        image = next(i for i in images if i.choice.id == request.image_id)
        return PreparedSpawn(account, request, image, options, tuple(images), limits, quota)

    async def admit(self, prepared: PreparedSpawn) -> PreparedSpawn:
        """admit: may this request start now under the user's quota? SpawnFailed(403) in plain words if not;
        with CarmeQuota.budget_policy "shorten", a request over the GPU-hours left comes back shortened.

        Runs inside the user's admission slot (see `_start`), on the hub's SLURM view only."""
        prepared = self.fit_reservation(prepared)
        account, request, quota = prepared.account, prepared.request, self.quota
        association = request.project or quota.account or self._only_account(account.username)
        usage = HUB_ADMISSION.usage(self.view, account.username, association, self.view.job_name_prefix,
                                    quota.usage_reset_period)
        limits = prepared.quota.limits  # read with the options: the store is read once per spawn
        refusal = admit(request.gpus, request.runtime_minutes, limits, usage)
        if refusal is not None and refusal.limit == "gpu_hours" and quota.budget_policy == "shorten":
            fits = runtime_that_fits(request.gpus, request.runtime_minutes, limits, usage)
            if fits >= 1:
                prepared = self._parsed(account, prepared.images, {**prepared.options, "runtime": fits},
                                        prepared.limits, prepared.quota)
                request = prepared.request
                self._emit(f"Runtime shortened to {format_duration(fits)}: that is what your GPU-hours allow "
                           f"({refusal.use:g} of {refusal.allowed:g} used or held this period); queue "
                           f"{request.partition}.", 5)
                refusal = admit(request.gpus, request.runtime_minutes, limits, usage)
        if refusal is None and request.project:  # the project's own budget and partitions: refused, never shortened
            refusal = self.project_refusal(request, usage, prepared.quota.template)
        if refusal is not None:
            QUOTA_REFUSALS.labels(refusal.limit).inc()
            self.log.info("Spawn %s refused by quota: %s", self._log_name, refusal.message)
            raise SpawnFailed(f"Over your quota: {refusal.message}", 403)
        warning = budget_warning(request.gpus, request.runtime_minutes, limits, usage, quota.budget_warning,
                                 quota.usage_reset_period)
        for warning in [warning, *map(over_words, prepared.quota.disk)]:
            if warning:
                self._emit(warning, 5)
        return prepared

    def fit_reservation(self, prepared: PreparedSpawn) -> PreparedSpawn:
        """SLURM ends a job when its reservation ends: a longer runtime is shortened to fit, and said."""
        name = prepared.request.reservation
        reservation = self.view.reservations.items.get(name) if name else None
        left = minutes_left(reservation, time.time()) if reservation else None
        if left is None or prepared.request.runtime_minutes <= left:
            return prepared
        if left < 1:
            raise SpawnFailed(f"Reservation {name} ends at {progress.format_time(reservation.end_time)}: "
                              "no time is left in it for a server", 400)
        options = {**prepared.options, "runtime": left, "partition": prepared.request.partition}  # same queue
        prepared = self._parsed(prepared.account, prepared.images, options, prepared.limits, prepared.quota)
        self._emit(f"Runtime shortened to {format_duration(left)}: reservation {name} ends at "
                   f"{progress.format_time(reservation.end_time)}.", 5)
        return prepared

    def project_refusal(self, request: SpawnRequest, usage: Usage, template: ProjectTemplate | None) -> Refusal | None:
        """A job in a project: the project's partitions and its GPU-hour budget (all members together,
        the account's own line in sshare)."""
        if template is None:
            return None
        if template.partitions and request.partition not in template.partitions:
            return Refusal("gpus_per_job", 0, 0, f"project {request.project} runs on the partitions "
                           f"{', '.join(template.partitions)} only, not on {request.partition}.")
        whole = self.view.usage.items.get(f"{request.project}/")
        project_usage = replace(usage, gpu_minutes_used=whole.gpu_minutes_used if whole else 0.0,
                                gpu_minutes_running=whole.gpu_minutes_running if whole else 0.0)
        refusal = admit(request.gpus, request.runtime_minutes, Limits(gpu_hours=template.gpu_hours), project_usage)
        if refusal is not None:
            return replace(refusal, message=f"project {request.project}'s {refusal.message}")
        return None

    def _only_account(self, username: str) -> str:
        """The user's one SLURM account from the usage snapshot ("" if none or several)."""
        accounts = {u.account for u in self.view.usage.items.values() if u.user == username}
        return accounts.pop() if len(accounts) == 1 else ""

    def render(self, prepared: PreparedSpawn, env: dict) -> str:
        """render: the batch script (pure, but for the check that the user's mounts are there)."""
        try:
            binds = self.mount_binds(prepared.account, [g.name for g in self.user.groups], prepared.quota.projects)
            return render_batch_script(
                prepared.request,
                self.job_site(prepared.account, env, prepared.image, prepared.request.project, binds),
                template_dir=Path(self.batch_template_dir) if self.batch_template_dir else None,
            )
        except MountMissing as e:  # a container never starts without the user's data
            raise SpawnFailed(str(e), 503) from None
        except ValueError as e:  # the site's settings, not the user's options (those were parsed)
            raise SpawnFailed(f"Carme is misconfigured, tell your admins: {e}") from None

    async def submit(self, script: str, prepared: PreparedSpawn, env: dict) -> str:
        """submit: sbatch as the user; the job id. A spawn cancelled meanwhile still cancels its job."""
        account, request = prepared.account, prepared.request
        await self._prepare_output_dir(account)
        self.port = 0
        self._port_wanted = True
        self.submitted_at = time.time()
        submission = asyncio.ensure_future(
            sbatch(script, prefix=self.user_prefix(account.username), env=command_env(env),
                   timeout=self.view.command_timeout)
        )
        try:
            # shielded: a spawn cancelled mid-submission must still learn (and cancel) its job
            job_id = await asyncio.shield(submission)
            self.accepted_at = time.time()
        except asyncio.CancelledError:
            submission.add_done_callback(self._cancel_late_submission)
            raise
        except SlurmCommandError as e:
            explained = explain_slurm_refusal(str(e))
            if explained:
                raise SpawnFailed(explained, 403) from None
            raise SpawnFailed(f"SLURM refused the job: {e}") from None
        # counted in flight until a snapshot begun AFTER sbatch returned: one begun while sbatch ran
        # may not list the job yet
        HUB_ADMISSION.submitted(account.username, job_id, time.time())
        self.steps.mark("sbatch returned")
        self._emit(
            f"Submitted SLURM job {job_id}: {request.gpus} GPU(s), {request.cpus} CPUs, "
            f"{request.memory_mb} MiB for {request.runtime_minutes} min on partition "
            f"{request.partition} ({request.routing_reason}).",
            10,
        )
        return job_id

    async def follow(self) -> tuple[str, int]:
        """Until the job runs, has reported its port and answers HTTP. A hung start fails just before the hub's
        start_timeout with the job's log tail (the hub's own timeout says nothing); the hub's stop cancels the job."""
        follower = self.follower(self.job_id)
        began = self._start_began or time.monotonic()
        budget = self.start_timeout - (time.monotonic() - began) - START_TIMEOUT_MARGIN
        try:
            async with asyncio.timeout(max(1.0, budget)):
                job = await follower.until_running_with_port(self._port_reported)
                ip = await self.view.node_address(job.batch_host or job.nodes)
                self._emit(f"JupyterLab reported port {self._reported_port} on {job.batch_host}; waiting for it to "
                           "answer.", 80)
                url = f"http://{ip}:{self._reported_port}{self.server.base_url if self.server else '/'}api"
                await follower.until_http(url, self.http_timeout)
        except JobEnded as e:
            raise SpawnFailed(str(e)) from None
        except TimeoutError:
            port = self._reported_port if self._port_reported.is_set() else None
            raise SpawnFailed(await follower.hung_start_text(self.start_timeout, port)) from None
        self.steps.mark("HTTP answered")
        self._emit(f"JupyterLab answers, {self.steps.seconds['HTTP answered']:.1f} s after the request; "
                   "the hub adds its route.", 90)
        asked = self._prepared.request.scratch_gib if self._prepared else 0
        if scratch := self.scratch_session_line(job.batch_host or job.nodes, asked):
            self._emit(scratch, 90)
        return ip, self._reported_port

    def follower(self, job_id: str) -> JobFollower:
        account_name = self._prepared.account.username if self._prepared else self.user.name
        return JobFollower(self.view, job_id, self.accepted_at, self._emit, self.user_prefix(account_name),
                           self.log, self.log_tail_lines, on_running=lambda: self.steps.mark("running in SLURM"))

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self):
        self._start_began = time.monotonic()
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
        # apply_user_options prepared this spawn; a wrapping spawner (wrapspawner) calls start() only
        prepared, self._prepared = self._prepared, None
        prepared = prepared or await self.prepare(self.user_options)
        self._prepared, self.spawn_request = prepared, prepared.request
        # one spawn of this user at a time from the quota check until sbatch returned: concurrent
        # requests cannot pass the check together
        async with HUB_ADMISSION.slot(prepared.account.username):
            prepared = await self.admit(prepared)
            self._prepared, self.spawn_request = prepared, prepared.request
            self.steps.mark("admitted")
            env = self.get_env()
            script = self.render(prepared, env)
            self.steps.mark("script rendered")
            self.job_id = ""
            self.job_id = await self.submit(script, prepared, env)
        self.ip, self.port = await self.follow()
        self.log.info("Server %s: job %s serves at %s:%s", self._log_name, self.job_id, self.ip, self.port)
        job_id = self.job_id
        self._timing = asyncio.ensure_future(log_steps_once_routed(
            self.steps, self._route_added, lambda: self.job_id == job_id, self.http_timeout,
            lambda: self.follower(job_id).log_head(self.view.job(job_id).job), self.submitted_at, self.log,
            self._log_name))
        return self.ip, self.port

    def _cancel_late_submission(self, submission: asyncio.Future) -> None:
        if submission.cancelled() or submission.exception() is not None:
            return
        job_id = submission.result()
        self.log.warning("Spawn of %s was cancelled while job %s was submitted: cancelling it", self._log_name, job_id)
        asyncio.ensure_future(scancel(job_id, timeout=self.view.command_timeout))

    async def _prepare_output_dir(self, account: JobAccount) -> None:
        directory = str(Path(self.job_output.format(home=account.home, username=account.username)).parent)
        try:
            await run_command(
                [*self.user_prefix(account.username), "mkdir", "-p", "-m", "0700", directory],
                env=command_env(),
                timeout=self.view.command_timeout,
            )
        except SlurmCommandError as e:
            raise SpawnFailed(f"cannot create the job output directory {directory}: {e}") from None

    async def poll(self):
        """None while the job is alive or its state is unknown; an exit status once SLURM says it ended."""
        if not self.job_id:
            return 0
        view = self.view
        if view.jobs.snapshot_started == 0:
            await view.jobs.wait_for_snapshot(0, timeout=view.command_timeout)
        jobview = view.job(self.job_id)
        if jobview.job is not None and not jobview.job.is_terminal:
            return None
        if jobview.job is None and not jobview.known_gone(self.accepted_at):
            return None  # SLURM has not answered since: doubt is not evidence
        self.last_failure = progress.describe_end(jobview.job, self.job_id)
        self.log.warning("Server %s stopped: %s", self._log_name, self.last_failure)
        status = (jobview.job.exit_status if jobview.job else None) or 1
        self.job_id = ""
        return status

    async def stop(self, now=False):
        if not self.job_id:
            return
        job_id = self.job_id
        self.log.info("Stopping server %s: scancel %s", self._log_name, job_id)
        try:
            await scancel(job_id, timeout=self.view.command_timeout)
        except SlurmCommandError as e:
            self.log.warning("scancel %s failed: %s", job_id, e)
        if now:
            return
        if not await self.follower(job_id).until_gone(30):
            self.log.warning("Job %s of %s did not end within 30 s of scancel", job_id, self._log_name)


async def apply_carme_options(spawner: CarmeSpawner, user_options) -> None:
    """JupyterHub's apply_user_options hook: bad options are refused (400) before a spawn begins."""
    spawner._prepared = await spawner.prepare(user_options)


# loading the spawner class serves Carme's port callback (not batchspawner's) and the SLURM view's API
port_callback.install()
hub_api.install()
hub_api.replace_api_handler(expected_start.PATH, expected_start.ExpectedStartHandler)
