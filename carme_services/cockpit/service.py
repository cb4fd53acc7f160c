"""The carme-cockpit service: the admins' overview of the cluster, their actions, the job history.

It reads the hub's ONE view of SLURM (jobs, nodes) and the hub's servers, assembled into the
overview (`overview`) and kept for `cache_seconds`: a page view asks SLURM nothing. The history
reads `sacct` of a bounded window through a cached reader (`accounting.SacctReader`). It changes
SLURM in one way: `scontrol update NodeName=N State=DRAIN|RESUME` as root (`actions`); a server is
stopped through the hub's REST API. Every action is written to its store's audit (`store`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime
from functools import cached_property
from pathlib import Path

from jupyterhub.utils import url_path_join
from prometheus_client import Counter
from tornado.httpclient import HTTPClientError
from traitlets import Float, Integer, List, TraitError, Unicode, validate

from carme_core.roles import role_of_model
from carme_slurm import SlurmCommandError
from carme_slurm.commands import command_env, run_command

from ..base import CarmeService, HubClient
from ..sessions.cards import server_path, servers_of
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from .accounting import SacctReader, remembered_choices, run_sacct
from .actions import check_node, check_reason, drain_argv, resume_argv
from .errors import CockpitError, InputError
from .charts import spawn_buckets
from .forecast import forecast
from .history import filter_rows, history_rows, parse_filters, parse_window, totals
from .overview import overview
from .store import CockpitStore, database

NAME = "carme-cockpit"
CULLER = "carme-culler"  # its GPU samples and idle GPU-hours, read with its admin scope when it is enabled
CULLER_SCOPES = [f"custom:{CULLER}:admin", f"access:services!service={CULLER}"]
READ_SCOPE = "custom:carme-cockpit:read"  # the overview, the history, the audit (operators, read-only)
ADMIN_SCOPE = "custom:carme-cockpit:admin"  # stop servers, drain and resume nodes


class CockpitService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "The admins' cockpit: nodes and GPUs, running and pending jobs, actions, job history."

    db_url = Unicode("", config=True, help="SQLAlchemy URL of the cockpit's store (the audit of the admins' "
                     "actions); default sqlite:///<carme.state_dir>/carme-cockpit.sqlite.")
    cache_seconds = Float(5.0, config=True, help="Seconds the assembled overview (the hub's SLURM view and "
                          "servers) is kept: page views and API calls within that share one read of the hub.")
    history_cache_seconds = Float(60.0, config=True, help="Seconds one window's `sacct` answer is kept for the "
                                  "history (asks for the same window share one sacct call).")
    max_window_days = Float(31.0, config=True, help="The longest window one history query may ask sacct for "
                            "(days); a longer one is refused with 400 naming `start`.")
    default_window_days = Float(7.0, config=True, help="The history's window when a query names no start (days).")
    sacct_timeout = Float(60.0, config=True, help="Seconds a history `sacct` may take.")
    scontrol_timeout = Float(30.0, config=True, help="Seconds a drain or resume (`scontrol update`) may take.")
    quota_page_url = Unicode("/services/carme-quota/admin#override-{user}", config=True,
                             help="Where a job's user links to: the user's quota page ({user}: the user name).")
    sessions_db_url = Unicode("", config=True, help="carme-sessions' store, read for the image of a job in the "
                              "history (SLURM does not keep it); default that service's default store under "
                              "carme.state_dir; empty: no images in the history.")
    forecast_hours = Integer(72, config=True, help="Hours ahead the free-GPU forecast covers (from the running "
                             "jobs' end times and the reservations in the hub's view), in steps of forecast_step_hours.")
    forecast_step_hours = Float(1.0, config=True, help="Hours between two points of the free-GPU forecast.")
    culler_url = Unicode("", config=True, help="carme-culler's URL (as the hub runs it), read for the GPU "
                         "charts: utilisation per job over time, idle GPU-hours. The hub's wiring sets it when the "
                         "culler is enabled; empty: no GPU charts.")
    culler_timeout = Float(10.0, config=True, help="Seconds a read of carme-culler's API may take.")
    utilisation_hours = Float(3.0, config=True, help="Hours of GPU samples the overview's utilisation chart shows.")
    operator_groups = List(Unicode(), [], config=True, help="Hub groups whose members may read the cockpit "
                           f"({READ_SCOPE}: overview, history, audit) without acting.")

    aliases = {**CarmeService.aliases, "db-url": "CockpitService.db_url"}

    @validate("cache_seconds", "history_cache_seconds", "max_window_days", "default_window_days", "sacct_timeout",
              "scontrol_timeout", "forecast_hours", "forecast_step_hours", "culler_timeout", "utilisation_hours")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"CockpitService.{proposal.trait.name} must be > 0, not {proposal.value}")
        if proposal.trait.name.endswith("window_days") and proposal.value > 366:
            raise TraitError(f"CockpitService.{proposal.trait.name} must be at most 366 days")
        return proposal.value

    def initialize(self, argv=None):
        super().initialize(argv)
        if not self.db_url:
            raise SystemExit(f"{NAME}: db_url is not set (carme: cockpit: db_url: in the settings file)")
        self._overview: tuple[float, dict] | None = None
        self._overview_lock = asyncio.Lock()
        self._gpu_use: dict[str | None, tuple[float, dict]] = {}  # by job (None: all), kept cache_seconds
        self._roles: tuple[float, dict[str, str]] | None = None

    @cached_property
    def store(self) -> CockpitStore:
        db = database(self.db_url)
        db.upgrade()
        return CockpitStore(db)

    @cached_property
    def sacct(self) -> SacctReader:
        return SacctReader(lambda window: run_sacct(window, self.sacct_timeout), self.history_cache_seconds)

    @cached_property
    def counters(self) -> dict:
        registry = self.metrics.registry
        return {"actions": Counter("carme_cockpit_actions", "Admins' actions, by action and outcome",
                                   ["action", "outcome"], registry=registry),
                "overviews": Counter("carme_cockpit_overview_reads", "Overviews assembled from the hub's view",
                                     registry=registry),
                "sacct": Counter("carme_cockpit_sacct_calls", "sacct calls of the history", registry=registry)}

    def web_handlers(self):
        from .handlers import handlers

        return handlers()

    async def in_store(self, method, *args, **kwargs):
        return await asyncio.to_thread(method, *args, **kwargs)

    # ---- the overview ------------------------------------------------------------------------------

    async def overview(self, fresh: bool = False) -> dict:
        """The overview, assembled at most once per cache_seconds (however many ask at once)."""
        async with self._overview_lock:
            cached = self._overview
            if cached is not None and not fresh and time.monotonic() - cached[0] < self.cache_seconds:
                return cached[1]
            hub = self.hub_client()
            jobs, nodes, reservations, users = await asyncio.gather(
                hub.slurm("jobs"), hub.slurm("nodes"), hub.slurm("reservations"), hub.get_all("users", state="active"))
            now = time.time()
            data = overview(jobs, nodes, users, now, self.quota_page_url)
            data["forecast"] = forecast(nodes.get("nodes", []), jobs.get("jobs", []),
                                        reservations.get("reservations", []), now, self.forecast_hours,
                                        self.forecast_step_hours).to_dict()
            self.counters["overviews"].inc()
            self._overview = (time.monotonic(), data)
            return data

    async def spawn_latency(self) -> list[tuple[str, int]]:
        """The hub's spawn-to-ready histogram as buckets ([] if the hub does not answer)."""
        try:
            return spawn_buckets(await self.hub_client().metrics())
        except Exception as e:  # noqa: BLE001 - a chart the page can do without
            self.log.warning("carme-cockpit: the hub's metrics did not answer: %s", e)
            return []

    async def culler(self, path: str, **query) -> dict | None:
        """carme-culler's api/<path> with the cockpit's token ({} for its 404; None: no culler, or it did not
        answer)."""
        if not self.culler_url:
            return None
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        api = f"{self.culler_url.rstrip('/')}{url_path_join(base, 'services', CULLER, 'api')}"
        try:  # the same client as the hub's API, with the cockpit's own token
            return await HubClient(api, self.hub_client().token, self.culler_timeout).get(path, **query)
        except HTTPClientError as e:
            if e.code == 404:  # e.g. samples of a job the culler does not watch: an answer, with nothing in it
                return {}
            self.log.warning("carme-cockpit: carme-culler's api/%s refused: %s", path, e)
            return None
        except Exception as e:  # noqa: BLE001 - charts the page can do without
            self.log.warning("carme-cockpit: carme-culler's api/%s did not answer: %s", path, e)
            return None

    async def gpu_use(self, job_id: str | None = None) -> dict:
        """The culler's samples (one job's, or every job's of the last utilisation_hours) and its idle
        GPU-hours: {"culler": enabled?, "answered": ..., "jobs": [...], "idle": {...} | None}, kept
        cache_seconds like the overview (page views within that share one read of the culler)."""
        cached = self._gpu_use.get(job_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        if job_id is None:
            samples, idle = await asyncio.gather(
                self.culler("samples", since=int(time.time() - self.utilisation_hours * 3600)), self.culler("idle"))
            jobs = (samples or {}).get("jobs", [])
        else:
            one, idle = await asyncio.gather(self.culler(f"samples/{job_id}"), self.culler("idle"))
            jobs, samples = ([one] if one else []), one
        data = {"culler": bool(self.culler_url), "answered": samples is not None and idle is not None,
                "jobs": jobs, "idle": idle}
        if len(self._gpu_use) > 256:  # job pages of many jobs: forget the old ones
            self._gpu_use.clear()
        self._gpu_use[job_id] = (time.monotonic(), data)
        return data

    async def user_roles(self) -> dict[str, str]:
        """{hub user: Carme role} (the history's GPU-hours by role), read at most once per history_cache_seconds."""
        cached = self._roles
        if cached is not None and time.monotonic() - cached[0] < self.history_cache_seconds:
            return cached[1]
        try:
            users = await self.hub_client().get_all("users")
        except Exception as e:  # noqa: BLE001 - the chart says "(not a hub user)" instead
            self.log.warning("carme-cockpit: the hub's users did not answer: %s", e)
            return {}
        roles = {u["name"]: role_of_model(u, self.power_groups) for u in users}
        self._roles = (time.monotonic(), roles)
        return roles

    def forget_overview(self) -> None:
        self._overview = None

    # ---- actions -----------------------------------------------------------------------------------

    async def audited(self, actor: str, action: str, target: str, outcome: str, message: str,
                      reason: str = "") -> dict:
        self.counters["actions"].labels(action, outcome).inc()
        (self.log.info if outcome == "done" else self.log.warning)(
            "%s %s by %s: %s: %s", action, target, actor, outcome, message)
        return await self.in_store(self.store.record, actor=actor, action=action, target=target, outcome=outcome,
                                   message=message, reason=reason)

    async def stop(self, actor: str, user: str, server: str) -> dict:
        """Stop `user`'s `server` through the hub's REST API (its spawner cancels the job)."""
        target, label = f"{user}/{server}", server or "(default)"
        try:
            model = await self.hub_client().get(f"users/{user}")
        except HTTPClientError as e:
            if e.code == 404:
                await self.audited(actor, "stop", target, "refused", f"no hub user {user}")
                raise CockpitError(404, f"user: no hub user {user}") from None
            raise
        found = {s.name: s for s in servers_of(model)}.get(server)
        if found is None or not found.active:
            message = f"server {label} of {user} is not running"
            await self.audited(actor, "stop", target, "refused", message)
            raise CockpitError(409, message)
        try:
            await self.hub_client().delete(server_path(user, server))
        except HTTPClientError as e:
            message = f"the hub refused to stop server {label} of {user}: {hub_words(e)}"
            await self.audited(actor, "stop", target, "failed", message)
            raise CockpitError(e.code if 400 <= e.code < 500 else 502, message) from None
        self.forget_overview()
        entry = await self.audited(actor, "stop", target, "done", f"stopping (job {found.job_id or 'not known'})")
        return {"user": user, "server": server, "job_id": found.job_id, "status": "stopping", "audit": entry}

    async def node_names(self) -> list[str]:
        nodes = await self.hub_client().slurm("nodes")
        return [n["name"] for n in nodes.get("nodes", [])]

    async def node_action(self, actor: str, action: str, node, reason=None) -> dict:
        """Drain (with a reason) or resume `node`: checked against the view, then scontrol as root."""
        shown_node = node if isinstance(node, str) else repr(node)
        try:
            node = check_node(node, await self.node_names())
            reason = check_reason(reason, required=action == "drain") if action == "drain" else ""
        except InputError as e:
            await self.audited(actor, action, shown_node[:255], "refused", str(e), str(reason or "")[:200])
            raise
        argv = drain_argv(node, reason) if action == "drain" else resume_argv(node)
        try:
            await run_command(argv, env=command_env(), timeout=self.scontrol_timeout)
        except SlurmCommandError as e:
            answered = e.returncode is not None
            message = f"SLURM {'refused' if answered else 'did not answer'}: {e}"
            await self.audited(actor, action, node, "failed", message, reason)
            raise CockpitError(409 if answered else 503, message) from None
        self.forget_overview()
        words = f"drained: {reason}" if action == "drain" else "resumed"
        entry = await self.audited(actor, action, node, "done", words, reason)
        return {"node": node, "action": action, "reason": reason, "argv": argv, "audit": entry,
                "note": "the hub's view of the nodes shows it with its next sinfo read"}

    # ---- the history ---------------------------------------------------------------------------------

    async def history(self, query: dict) -> dict:
        """The jobs of a bounded window from sacct (cached), filtered; InputError naming a field."""
        window = parse_window(query, datetime.now(), self.max_window_days, self.default_window_days)
        filters = parse_filters(query)
        calls = self.sacct.calls
        jobs, read_at = await self.sacct.read(window)
        if self.sacct.calls != calls:
            self.counters["sacct"].inc()
        prefix = (await self.hub_client().slurm("jobs")).get("job_name_prefix", "")
        choices = await self.in_store(remembered_choices, self.sessions_db_url, [h.job.job_id for h in jobs])
        rows = filter_rows(history_rows(jobs, prefix, choices), filters)
        return {"window": window.to_dict(), "filters": filters.to_dict(), "read_at": read_at, "rows": rows,
                "totals": totals(rows), "images_known": bool(self.sessions_db_url)}, window


def hub_words(e: HTTPClientError) -> str:
    body = getattr(e.response, "body", b"") if e.response is not None else b""
    try:
        return json.loads(body).get("message") or str(e)
    except (ValueError, AttributeError, TypeError):
        return str(e)


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, app = checked_settings(CockpitService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-cockpit.sqlite")
    values.setdefault("sessions_db_url", f"sqlite:///{settings.state_dir}/carme-sessions.sqlite")
    own_scopes = ["list:users", "read:users", "read:servers", "admin:server_state", "servers", "read:metrics"]
    if CULLER in settings.service_urls:  # the GPU charts: the culler's samples and idle GPU-hours
        values.setdefault("culler_url", settings.service_urls[CULLER])
        own_scopes += CULLER_SCOPES
    access = f"access:services!service={NAME}"
    roles = [
        own_role(NAME, own_scopes, "carme-cockpit reads every server (options and state), the SLURM view, the "
                 "hub's metrics (spawn latency) and carme-culler's GPU samples, and stops servers."),
        admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE, access],
                    "The hub's admins see the cockpit and act: stop servers, drain and resume nodes."),
    ]
    if app.operator_groups:
        roles.append({"name": f"{NAME}-operators", "description": "Operators read the cockpit (no actions).",
                      "groups": sorted(app.operator_groups), "scopes": [READ_SCOPE, access]})
    return {
        "service": service_spec(CockpitService, settings, values, url=values.get("url", "http://127.0.0.1:10110"),
                                allowed_scopes=[READ_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            READ_SCOPE: {"description": "Read the cockpit: nodes, GPUs, every user's jobs, the job history, the "
                                        "audit of the admins' actions."},
            ADMIN_SCOPE: {"description": "Act from the cockpit: stop any server, drain and resume nodes."},
        },
        "roles": roles,
    }


if __name__ == "__main__":
    CockpitService.launch_instance()
