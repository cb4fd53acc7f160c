"""carme-cockpit's API and pages (JSON under <prefix>api/):

    GET  api/overview                    nodes with GPUs by type, Carme's running/pending jobs, others counted   read
    GET  api/history?start=&end=&user=&project=&image=&state=&jobs=&format=json|csv
                                         sacct's jobs of a bounded window (at most max_window_days)              read
    GET  api/actions                     the audit of the admins' actions, newest first                         read
    GET  api/gpu-use[?job=JOB]           carme-culler's GPU samples (running jobs) and idle GPU-hours per hour      read
    POST api/servers/stop                {"user": U, "server": S} stop a server through the hub's API            admin
    POST api/nodes/NODE/drain            {"reason": "..."}: scontrol update NodeName=NODE State=DRAIN Reason=..  admin
    POST api/nodes/NODE/resume           scontrol update NodeName=NODE State=RESUME                              admin
    GET  /                               the overview page (POST /: its forms, action=stop|drain|resume)         read
    GET  history                         the history page: filters, table, CSV link, charts                     read
    GET  jobs/JOB                        one running job: its GPU utilisation over time, idle GPU-hours           read

read: custom:carme-cockpit:read; admin: custom:carme-cockpit:admin (checked with JupyterHub's
check_scopes). Answers: bad input 400 naming the field; unknown user or server 404; not running,
or SLURM's or the hub's refusal, 409 with their words; SLURM not answering 503.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from tornado import web

from ..base import CarmeServiceHandler
from .actions import check_body, check_server_target
from .charts import (
    forecast_chart,
    gpu_hours_chart,
    idle_hours_chart,
    spawn_latency_chart,
    utilisation_chart,
    wait_chart,
)
from .errors import CockpitError, InputError
from .history import COLUMNS, to_csv
from .service import ADMIN_SCOPE, READ_SCOPE

QUERY_FIELDS = ("start", "end", "user", "project", "image", "state", "jobs")


class CockpitHandler(CarmeServiceHandler):
    def may_act(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def require_read(self) -> None:
        self.require(self.has_scope(READ_SCOPE) or self.may_act(), f"the cockpit needs {READ_SCOPE} (operators) or "
                     f"{ADMIN_SCOPE} (the hub's admins)")

    def require_admin(self) -> None:
        self.require(self.may_act(), f"acting from the cockpit needs {ADMIN_SCOPE} (the hub's admins)")

    def refuse(self, e: Exception) -> None:
        status = 400 if isinstance(e, InputError) else e.status
        self.write_json({"status": status, "message": str(e) if isinstance(e, InputError) else e.message,
                         **({"field": e.field} if isinstance(e, InputError) else {})}, status)

    def query(self) -> dict:
        return {k: self.get_argument(k, "") for k in QUERY_FIELDS}

    async def act(self, action: str, body: dict, node: str = "") -> dict:
        service, actor = self.service, self.username
        if action == "stop":
            user, server = check_server_target(body)
            return await service.stop(actor, user, server)
        check_body(body, ("reason",) if action == "drain" else ())
        return await service.node_action(actor, action, node, body.get("reason"))


class OverviewHandler(CockpitHandler):
    @web.authenticated
    async def get(self):
        self.require_read()
        self.write_json({**await self.service.overview(), "may_act": self.may_act(),
                         "spawn_latency": await self.service.spawn_latency()})


class HistoryHandler(CockpitHandler):
    @web.authenticated
    async def get(self):
        self.require_read()
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, "format: must be json or csv")
        try:
            data, window = await self.service.history(self.query())
        except InputError as e:
            return self.refuse(e)
        if fmt == "json":
            return self.write_json({**data, "columns": list(COLUMNS)})
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="carme-jobs-{window.start:%Y%m%d}-'
                                               f'{window.end:%Y%m%d}.csv"')
        self.finish(to_csv(data["rows"]))


class ActionsHandler(CockpitHandler):
    @web.authenticated
    async def get(self):
        self.require_read()
        try:
            limit = min(1000, max(1, int(self.get_argument("limit", "100"))))
        except ValueError:
            raise web.HTTPError(400, "limit: must be a whole number") from None
        self.write_json({"actions": await self.service.in_store(self.service.store.actions, limit)})


class GpuUseHandler(CockpitHandler):
    @web.authenticated
    async def get(self):
        self.require_read()
        job = self.get_argument("job", "")
        if job and not job.isdigit():
            raise web.HTTPError(400, "job: must be a SLURM job id (digits)")
        self.write_json(await self.service.gpu_use(job or None))


class StopHandler(CockpitHandler):
    @web.authenticated
    async def post(self):
        self.require_admin()
        try:
            self.write_json(await self.act("stop", self.json_body()), 202)
        except (InputError, CockpitError) as e:
            self.refuse(e)


class NodeHandler(CockpitHandler):
    @web.authenticated
    async def post(self, node: str, action: str):
        self.require_admin()
        try:
            self.write_json(await self.act(action, self.json_body(), node))
        except (InputError, CockpitError) as e:
            self.refuse(e)


class OverviewPage(CockpitHandler):
    async def show(self, notice: str = "", kind: str = "success", status: int = 200) -> None:
        data = await self.service.overview()
        actions = await self.service.in_store(self.service.store.actions, 10)
        use = await self.service.gpu_use()
        self.set_status(status)
        self.finish(self.render_page(
            "cockpit.html", data=data, may_act=self.may_act(), notice=notice, notice_kind=kind, actions=actions,
            forecast_svg=forecast_chart(data["forecast"]), spawn_svg=spawn_latency_chart(await self.service.spawn_latency()),
            gpu_use=use, job_gpu={s["job_id"]: s for s in (use["idle"] or {}).get("servers", [])},
            utilisation_svg=utilisation_chart(use["jobs"]) if use["culler"] else "",
            idle_svg=idle_hours_chart(use["idle"]) if use["culler"] else ""))

    @web.authenticated
    async def get(self):
        self.require_read()
        await self.show()

    @web.authenticated
    async def post(self):
        self.require_admin()
        action = self.get_body_argument("action", "")
        if action not in ("stop", "drain", "resume"):
            raise web.HTTPError(400, "action: must be stop, drain or resume")
        if action == "stop":
            body = {"user": self.get_body_argument("user", ""), "server": self.get_body_argument("server", "")}
        else:
            body = {"reason": self.get_body_argument("reason", "")} if action == "drain" else {}
        node = self.get_body_argument("node", "")
        try:
            answer = await self.act(action, body, node)
        except (InputError, CockpitError) as e:
            status = 400 if isinstance(e, InputError) else e.status
            return await self.show(str(e) if isinstance(e, InputError) else e.message, "danger", status)
        notice = {"stop": f"Stopping {answer.get('user')}/{answer.get('server') or '(default)'}.",
                  "drain": f"{node} drained: {answer.get('reason')}.",
                  "resume": f"{node} resumed."}[action]
        await self.show(notice)


class HistoryPage(CockpitHandler):
    @web.authenticated
    async def get(self):
        self.require_read()
        query = self.query()
        try:
            data, window = await self.service.history(query)
        except InputError as e:
            self.set_status(400)
            return self.finish(self.render_page("cockpit_history.html", data=None, error=str(e), query=query,
                                                csv_url="", charts={}))
        csv_query = urlencode({**{k: v for k, v in query.items() if v}, "format": "csv"})
        roles = await self.service.user_roles()
        by_role = [{**r, "role": roles.get(r["user"], "(not a hub user)")} for r in data["rows"]]
        charts = {"gpu_hours": gpu_hours_chart(data["rows"], window), "wait": wait_chart(data["rows"]),
                  "gpu_hours_role": gpu_hours_chart(by_role, window, "role")}
        self.finish(self.render_page("cockpit_history.html", data=data, error="", query=query, charts=charts,
                                     csv_url=f"{self.service.service_prefix}api/history?{csv_query}"))


class JobPage(CockpitHandler):
    @web.authenticated
    async def get(self, job_id: str):
        self.require_read()
        data, use = await asyncio.gather(self.service.overview(), self.service.gpu_use(job_id))
        job = next((j for j in data["jobs"] if j["job_id"] == job_id), None)
        gpu = next((s for s in (use["idle"] or {}).get("servers", []) if s["job_id"] == job_id), None)
        if job is None and not use["jobs"]:
            raise web.HTTPError(404, f"job {job_id}: not a running Carme job (the history has the ended ones)")
        self.finish(self.render_page("cockpit_job.html", job=job, job_id=job_id, use=use, gpu=gpu,
                                     utilisation_svg=utilisation_chart(use["jobs"], f"GPU utilisation of job {job_id}")
                                     if use["culler"] else ""))


def handlers() -> list[tuple[str, type, dict]]:
    return [
        (r"api/overview", OverviewHandler, {}),
        (r"api/history", HistoryHandler, {}),
        (r"api/actions", ActionsHandler, {}),
        (r"api/gpu-use", GpuUseHandler, {}),
        (r"api/servers/stop", StopHandler, {}),
        (r"api/nodes/([^/]+)/(drain|resume)", NodeHandler, {}),
        (r"history/?", HistoryPage, {}),
        (r"jobs/(\d+)", JobPage, {}),
        (r"/?", OverviewPage, {}),
    ]
