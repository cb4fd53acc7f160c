"""Session cards (pure): one per hub server of a user, from the hub's user model and the SLURM view.

A card joins three readings: the hub's server (ready, pending, started, last activity, the user's
options, `state.job_id` while it runs, `state.last_failure` once the hub saw its job end), the
hub's view of the job (`squeue`, which still lists an ended job for a few minutes: its state and
exit code) and accounting (`sacct`, for a job squeue no longer lists). A stopped server's job id is
gone from the hub's state: the card takes the newest job of that server the service remembered or
that SLURM names after it (Carme's job name is `<prefix><user>[-<server slug>]`).

The status badge:

    queued       the hub is spawning it and SLURM has not started its job (reason, expected start)
    starting     the hub is spawning it and its job runs (JupyterLab is starting)
    running      ready, its job runs (time remaining); "ending soon" within ending_soon of its limit
    stopping     the hub is stopping it, or SLURM has not recorded the end of its job yet
    completed    it ended as sessions end: stopped from the hub, the server exited, its time was up
    failed       its job failed (or the spawn failed before a job ran)
    cancelled    its job was cancelled outside the hub (scancel, an administrator) or preempted
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from carme_slurm.accounting import AccountedJob
from carme_slurm.gres import parse_gres
from carme_slurm.jobs import SlurmJob, server_slug
from carme_slurm.reasons import describe_end_state, describe_reason

from container_catalog.web_apps import APP_NAME, app_path

from ..reconcile import hub_time

BADGES = ("queued", "starting", "running", "ending soon", "stopping", "completed", "failed", "cancelled")
COMPLETED_STATES = frozenset({"COMPLETED", "TIMEOUT", "DEADLINE"})
CANCELLED_STATES = frozenset({"CANCELLED", "PREEMPTED", "REVOKED"})
FAILED_STATES = frozenset({"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"})
STOPPED_FROM_THE_HUB = "stopped from the hub (Stop, an administrator or the idle culler)"
CANCELLED_OUTSIDE = "its job was cancelled outside the hub (scancel or an administrator)"


@dataclass(frozen=True)
class SessionServer:
    """One server of the hub's user model (`GET /hub/api/users/U?include_stopped_servers`)."""

    user: str
    name: str  # "" for the default server
    ready: bool = False
    pending: str | None = None  # "spawn", "stop", ... while a transition runs
    started: float = 0.0  # epoch s; 0: unknown
    last_activity: float = 0.0
    url: str = ""  # where the hub routes it (/user/U/NAME/)
    options: Mapping = field(default_factory=dict)  # the user's choices of its last start (the hub keeps them)
    job_id: str = ""  # while it runs (state.job_id)
    last_failure: str = ""  # the hub's words once it saw its job end by itself (state.last_failure)
    #: (name, title) of the web interfaces of its image while it runs (state.interfaces, CarmeSpawner)
    interfaces: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        return self.ready or bool(self.pending)

    @classmethod
    def from_model(cls, user: str, name: str, model: Mapping) -> SessionServer:
        if "state" not in model:  # without the state no job is known: refuse rather than guess
            raise RuntimeError("the hub did not show server state: this service's token lacks admin:server_state")
        state = model.get("state") or {}
        return cls(user=user, name=name, ready=bool(model.get("ready")), pending=model.get("pending") or None,
                   started=hub_time(model.get("started")), last_activity=hub_time(model.get("last_activity")),
                   url=str(model.get("url") or ""), options=dict(model.get("user_options") or {}),
                   job_id=str(state.get("job_id") or ""), last_failure=str(state.get("last_failure") or ""),
                   interfaces=_interfaces(state.get("interfaces")))


def _interfaces(value) -> tuple[tuple[str, str], ...]:
    """state.interfaces as (name, title) pairs; anything malformed is left out."""
    pairs = []
    for item in value if isinstance(value, list) else ():
        if (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item)
                and APP_NAME.fullmatch(item[0])):
            pairs.append((item[0], item[1][:80]))
    return tuple(pairs)


def interface_links(server: SessionServer) -> list[dict]:
    """[{name, title, url}] of a ready server's web interfaces: JupyterLab at <url>lab, an app at
    <url><name>/ (jupyter-server-proxy inside the server, behind its hub login); [] otherwise."""
    if not server.ready or not server.url:
        return []
    base = server.url if server.url.endswith("/") else server.url + "/"
    return [{"name": name, "title": title, "url": base + app_path(name)} for name, title in server.interfaces]


def servers_of(user_model: Mapping) -> list[SessionServer]:
    """The user's servers, default first, then by name."""
    if "servers" not in user_model:
        raise RuntimeError("the hub did not show servers: this service's token lacks read:servers")
    servers = [SessionServer.from_model(user_model["name"], name, model)
               for name, model in (user_model.get("servers") or {}).items()]
    return sorted(servers, key=lambda s: (s.name != "", s.name))


def job_name(prefix: str, user: str, server: str) -> str:
    """The SLURM job name Carme gives a server's job (as the spawner does)."""
    slug = server_slug(server)
    return f"{prefix}{user}" + (f"-{slug}" if slug else "")


def _number(job_id: str) -> int:
    head = job_id.split("_")[0].split("+")[0]
    return int(head) if head.isdigit() else -1


def session_job_id(server: SessionServer, remembered: Iterable[str], live: Iterable[SlurmJob],
                   accounted: Iterable[AccountedJob], prefix: str) -> str:
    """The job of the server's session: its running job, else the newest job of that server the
    service remembered or SLURM lists by its name (SLURM's job ids grow); "" if none is known."""
    if server.job_id:
        return server.job_id
    name = job_name(prefix, server.user, server.name)
    ids = set(remembered)
    ids |= {j.job_id for j in live if j.user == server.user and j.name == name}
    ids |= {j.job_id for j in accounted if j.user == server.user and j.name == name}
    return max(ids, key=_number, default="")


def gpu_type(job: SlurmJob | None, options: Mapping) -> str:
    """The GPU type SLURM gave the job (its allocation), else the one asked for ("" any)."""
    for detail in (job.gres_detail if job else ()):
        try:
            types = {g.type for g in parse_gres(detail) if g.name == "gpu" and g.type}
        except ValueError:
            continue
        if types:
            return ",".join(sorted(types))
    return str(options.get("gpu_type") or "")


def exit_words(job: SlurmJob | None, accounted: AccountedJob | None) -> str:
    """The exit code in words: squeue's while it lists the job, else sacct's "status:signal"."""
    if job is not None and job.is_terminal:
        if job.exit_signal:
            return f"killed by signal {job.exit_signal}"
        return "" if job.exit_status is None else f"exit code {job.exit_status}"
    code = accounted.exit_code if accounted else ""
    status, _, signal = code.partition(":")
    if signal.isdigit() and int(signal):
        return f"killed by signal {int(signal)}"
    return f"exit code {int(status)}" if status.isdigit() else ""


def ended_status(server: SessionServer, state: str, time_limit: int | None = None) -> tuple[str, str]:
    """(badge, end reason in words) of a stopped server whose job's last known SLURM state is
    `state` ("" none). The hub writes `last_failure` only when it saw the job end by itself; a
    server stopped from the hub has none, and its job ends CANCELLED (Carme's scancel)."""
    state = state.split()[0] if state.strip() else ""
    outside = bool(server.last_failure)
    if not state:
        return ("failed", server.last_failure) if outside else ("completed", STOPPED_FROM_THE_HUB)
    if state == "CANCELLED":
        return ("cancelled", CANCELLED_OUTSIDE) if outside else ("completed", STOPPED_FROM_THE_HUB)
    words = describe_end_state(state)
    if state == "TIMEOUT" and time_limit:
        words += f" ({duration_words(time_limit * 60)})"
    if state in COMPLETED_STATES:
        return "completed", words
    if state in CANCELLED_STATES:
        return "cancelled", words
    if state in FAILED_STATES:
        return "failed", words
    return "stopping", "SLURM has not recorded the end of its job yet"


def status(server: SessionServer, job: SlurmJob | None, accounted: AccountedJob | None, now: float,
           ending_soon_s: float) -> tuple[str, str]:
    """(badge, words) of one server: see the module's table."""
    if server.pending == "spawn" or (server.pending and not server.ready and server.pending != "stop"):
        if job is not None and job.is_pending:
            return "queued", describe_reason(job.reason)
        return "starting", "its job runs; JupyterLab is starting" if job and job.is_running else "submitting its job"
    if server.pending == "stop":
        return "stopping", "the hub is stopping it"
    if server.ready:
        if job is not None and job.is_terminal:
            return ended_status(server, job.state, job.time_limit_minutes)
        if job is not None and job.end_time and job.end_time - now <= ending_soon_s:
            return "ending soon", f"its time limit ends in {duration_words(max(0.0, job.end_time - now))}"
        return "running", f"running on {job.batch_host or job.nodes}" if job else "running"
    if job is not None:  # squeue still lists it
        if not job.is_terminal:
            return "stopping", "SLURM has not recorded the end of its job yet"
        return ended_status(server, job.state, job.time_limit_minutes)
    return ended_status(server, accounted.state if accounted else "")


def duration_words(seconds: float) -> str:
    """12 s, 5 min, 1 h 5 min, 2 d 3 h."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def server_path(user: str, server: str) -> str:
    """The hub API's path of a server: users/U/server (default) or users/U/servers/NAME."""
    base = f"users/{quote(user, safe='')}"
    return f"{base}/servers/{quote(server, safe='')}" if server else f"{base}/server"


def spawn_url(hub_prefix: str, user: str, server: str) -> str:
    """The hub's spawn form for this server (it preselects the server's last choices)."""
    url = f"{hub_prefix}spawn/{quote(user, safe='')}"
    return f"{url}/{quote(server, safe='')}" if server else url


def walltime_warning(job_id: str, end_time: float, now: float, warn_minutes: Iterable[float]) -> dict | None:
    """The warning due for a session whose time limit ends at `end_time`: the smallest of
    `warn_minutes` already reached (None before the first). Its `key` is new for each threshold and
    each end time, so a page shows each warning once, and again after an Extend moved the end."""
    left = max(0.0, end_time - now)
    reached = [m for m in warn_minutes if left <= m * 60]
    if not reached:
        return None
    minutes = min(reached)
    return {"minutes": minutes, "key": f"{job_id}:walltime:{minutes:g}:{int(end_time)}", "end_time": end_time,
            "message": f"This session ends in {duration_words(left)} (its time limit): save your work, or extend "
                       "it within your quota."}  # short: JupyterLab's toasts show 140 characters


def card(server: SessionServer, job_id: str, job: SlurmJob | None, accounted: AccountedJob | None, now: float,
         ending_soon_s: float, hub_prefix: str, extensions: Iterable[Mapping] = (),
         warn_minutes: Iterable[float] = ()) -> dict:
    """One session card as JSON: what the page shows and what the API answers."""
    badge, words = status(server, job, accounted, now, ending_soon_s)
    options = server.options
    running = badge in ("running", "ending soon")
    gpus = job.gpus if job else int(accounted.gpus) if accounted else _int(options.get("gpus"))
    data = {
        "user": server.user, "server": server.name, "label": server.name or "default server",
        "status": badge, "words": words, "job_id": job_id,
        "image": str(options.get("image") or ""), "gpus": gpus, "gpu_type": gpu_type(job, options),
        "node": (job.batch_host or job.nodes) if job else (accounted.nodes if accounted else ""),
        "project": job.account if job else (accounted.account if accounted else ""),
        "partition": job.partition if job else str(options.get("partition") or ""),
        "created": server.started or (job.submit_time if job else 0) or None,
        "last_activity": server.last_activity or None,
        "time_limit_minutes": job.time_limit_minutes if job else None,
        "options": dict(options),
        "extensions": [dict(e) for e in extensions],
        "links": {"open": server.url if server.ready else "", "edit": spawn_url(hub_prefix, server.user, server.name)},
        "interfaces": interface_links(server),
        "actions": {"open": server.ready, "stop": server.active and server.pending != "stop",
                    "extend": running and job is not None and job.is_running and bool(job.time_limit_minutes),
                    "relaunch": not server.active, "edit": not server.active},
    }
    if badge == "queued" and job is not None:
        data["queued"] = {"time_requested_minutes": job.time_limit_minutes, "reason": describe_reason(job.reason),
                          "expected_start": job.start_time if job.start_time > now else None}
    if running and job is not None and job.end_time:
        data["running"] = {"end_time": job.end_time, "time_left_s": max(0, int(job.end_time - now)),
                           "started": job.start_time or None,
                           "warning": walltime_warning(job_id, job.end_time, now, warn_minutes)}
    if badge in ("completed", "failed", "cancelled"):
        data["ended"] = {"reason": words, "exit": exit_words(job, accounted),
                         "state": (job.state if job else accounted.state if accounted else ""),
                         "hub_said": server.last_failure,
                         "at": (job.end_time if job else (accounted.ended.timestamp() if accounted and accounted.ended
                                                         else None))}
    return data


def _int(value) -> int:
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0
