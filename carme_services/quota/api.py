"""carme-quota's REST API (JSON under <prefix>api/):

    GET    api/users/NAME              NAME's limits (effective, by layer), use and projects   read (own) | admin
    GET    api/users                   every user's, most GPU-hours first                       admin
    PUT    api/users/NAME/override     set NAME's override {limit: value|null, ...}             admin
    DELETE api/users/NAME/override     drop it                                                  admin
    GET    api/audit[?target=user:NAME&limit=N]   who changed what, when, old -> new            admin
    GET    api/sync                    the last sync: commands, drift, error                    admin
    GET    api/disk                    the disk pass's last reading of everyone, its changes     admin
    POST   api/sync[?dry_run=1][&overwrite_drift=1]  sync now (also putting back hand-made changes) admin
    GET    api/projects                the projects (members, GPU-hours used: to members, managers)  any user
    POST   api/projects                create {name, description, template, managers}           admin
    POST   api/projects/P/requests     ask to join P {message}                                  any user
    GET    api/projects/P/requests     P's pending requests                                     P's managers, admin
    POST   api/projects/P/requests/ID  decide {approve: true|false}                             P's managers, admin

Scopes are checked with JupyterHub's check_scopes (`custom:carme-quota:read!user=NAME` for a
user's own); a project's managers are the store's, so they are checked here. Bad input is a 400
naming the field and changes nothing; every change is audited and followed by a sync.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from urllib.parse import quote

from tornado import web
from tornado.httpclient import HTTPClientError

from carme_core.roles import role_of_model
from carme_quota.admission import usage_period_start, user_usage
from carme_quota.limits import LimitError, Limits, ProjectTemplate, effective_limits
from carme_quota.store import Project, StoreError
from carme_slurm import SlurmJob
from carme_slurm.accounting import AccountedJob, AssociationUsage

from ..base import CarmeServiceHandler
from .service import ADMIN_SCOPE, READ_SCOPE


def store_error(e: StoreError) -> web.HTTPError:
    text = str(e)
    status = 404 if "unknown" in text else 409 if ("not pending" in text or "already" in text) else 400
    return web.HTTPError(status, text)


def daily_gpu_hours(jobs, user: str, since: datetime | None) -> list[dict]:
    """GPU-hours of `user`'s jobs per day they started (since `since`), from accounting."""
    days: dict[str, float] = {}
    for job in jobs:
        if job.user == user and job.started and (since is None or job.started >= since) and job.gpus:
            day = job.started.date().isoformat()
            days[day] = days.get(day, 0.0) + job.gpu_hours
    return [{"day": day, "gpu_hours": round(hours, 3)} for day, hours in sorted(days.items())]


def project_json(project: Project, full: bool) -> dict:
    data = {"name": project.name, "description": project.description, "managers": list(project.managers),
            "template": {**{k: getattr(project.template, k) for k in
                            ("gpus_at_once", "gpus_per_job", "max_runtime_minutes", "gpu_hours", "disk_gib",
                             "disk_inodes")},
                         "partitions": list(project.template.partitions)}}
    if full:
        data["members"] = list(project.members)
    return data


class QuotaHandler(CarmeServiceHandler):
    @property
    def store(self):
        return self.service.store

    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def require_admin(self) -> None:
        self.require(self.is_admin(), f"this needs the {ADMIN_SCOPE} scope (the hub's admins)")

    async def in_store(self, method, *args, **kwargs):
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except StoreError as e:
            raise store_error(e) from None

    async def hub_user(self, name: str) -> dict:
        try:
            return await self.service.hub_client().get(f"users/{quote(name, safe='')}")
        except HTTPClientError as e:
            if e.code == 404:
                raise web.HTTPError(404, f"no hub user {name}") from None
            raise

    async def report(self, model: dict, view: dict) -> dict:
        """A user's limits by layer, their use this period and today, and their projects."""
        name, role = model["name"], role_of_model(model, self.service.power_groups)
        quota = self.service.quota
        default, override = quota.role_default(role), await self.in_store(self.store.override, name)
        account = quota.account
        jobs = [SlurmJob.from_dict(j) for j in view["jobs"]["jobs"]]
        now = datetime.now()
        usage = user_usage(name, account, jobs, view["usage"], view["recent_jobs"], view["jobs"]["job_name_prefix"],
                           quota.usage_reset_period, now)
        period_start = usage_period_start(quota.usage_reset_period, now)
        return {
            "user": name, "role": role, "account": account,
            "limits": {"effective": effective_limits(default, None, override).to_dict(),
                       "role_default": default.to_dict(), "override": override.to_dict()},
            "usage": {"servers": usage.servers, "started_today": usage.started_today,
                      "gpu_hours_used": round(usage.gpu_minutes_used / 60, 3),
                      "gpu_hours_held": round(usage.gpu_minutes_running / 60, 3),
                      "resets_at": usage.resets_at.isoformat() if usage.resets_at else None,
                      "period_start": period_start.isoformat() if period_start else None},
            "history": daily_gpu_hours(view["recent_jobs"], name, period_start),
            "projects": (projects := await self.in_store(self.store.projects_of, name)),
            "disk": [u.to_dict() for u in await self.in_store(self.disk_of, name, projects)],
            "running": [{"job_id": j.job_id, "name": j.name, "state": j.state, "gpus": j.gpus, "account": j.account}
                        for j in jobs if j.user == name and j.is_active],
            "snapshot": view["usage_snapshot"],
        }

    def disk_of(self, user: str, projects: list[str]) -> list:
        """The disk pass's last reading of `user` and their projects' groups (empty: no disk pass)."""
        return [*self.store.disk_usage("user", [user]), *self.store.disk_usage("group", projects)]

    async def view(self) -> dict:
        hub = self.service.hub_client()
        jobs, usage, todays = await asyncio.gather(hub.slurm("jobs"), hub.slurm("usage"), hub.slurm("recent_jobs"))
        return {"jobs": jobs, "usage_snapshot": usage["snapshot"],
                "usage": {f"{u['account']}/{u['user']}": AssociationUsage.from_dict(u) for u in usage["usage"]},
                "recent_jobs": [AccountedJob.from_dict(j) for j in todays["jobs"]]}

    async def project_gpu_hours(self) -> dict[str, float]:
        """GPU-hours used this period by each project account (all its members), from the view's sshare."""
        usage = (await self.service.hub_client().slurm("usage"))["usage"]
        return {u["account"]: round(u["gpu_minutes_used"] / 60, 3) for u in usage if not u["user"]}

    async def decide_request(self, project: str, request_id: int, approve: bool):
        """A manager's (or an admin's) decision on one of `project`'s pending requests, then a sync."""
        found = await self.in_store(self.store.project, project)
        self.require(self.is_admin() or self.username in found.managers,
                     f"only the managers of project {project} and admins decide its requests")
        if request_id not in {r.id for r in await self.in_store(self.store.requests, project)}:
            raise web.HTTPError(404, f"request {request_id} is not a pending request of project {project}")
        decided = await self.in_store(self.store.decide, request_id, approve, self.username)
        return decided, await self.synced()

    async def synced(self) -> dict:
        return await self.service.sync()


class UserHandler(QuotaHandler):
    @web.authenticated
    async def get(self, name: str):
        self.require(self.is_admin() or self.has_scope(READ_SCOPE, user=name),
                     f"you may read your own quota only ({READ_SCOPE}!user={name} is needed)")
        self.write_json(await self.report(await self.hub_user(name), await self.view()))


class UsersHandler(QuotaHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        view = await self.view()
        reports = [await self.report(u, view) for u in await self.service.hub_client().get_all("users")]
        reports.sort(key=lambda r: (-r["usage"]["gpu_hours_used"], r["user"]))
        self.write_json({"users": reports})


class OverrideHandler(QuotaHandler):
    @web.authenticated
    async def put(self, name: str):
        self.require_admin()
        await self.hub_user(name)
        try:
            limits = Limits.from_mapping(self.json_body(), "override")
        except LimitError as e:
            raise web.HTTPError(400, str(e)) from None
        override = await self.in_store(self.store.set_override, name, limits, self.username)
        self.write_json({"user": name, "override": override.to_dict(), "sync": await self.synced()})

    @web.authenticated
    async def delete(self, name: str):
        self.require_admin()
        await self.in_store(self.store.clear_override, name, self.username)
        self.write_json({"user": name, "override": Limits().to_dict(), "sync": await self.synced()})


class AuditHandler(QuotaHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        try:
            limit = int(self.get_argument("limit", "100"))
        except ValueError:
            raise web.HTTPError(400, "limit: must be a whole number") from None
        entries = await self.in_store(self.store.audit, limit, self.get_argument("target", None))
        self.write_json({"audit": [{**vars(e), "at": e.at.isoformat()} for e in entries]})


class SyncHandler(QuotaHandler):
    @web.authenticated
    def get(self):
        self.require_admin()
        self.write_json(self.service.last_sync)

    @web.authenticated
    async def post(self):
        self.require_admin()
        flag = lambda name: self.get_argument(name, "0").lower() in ("1", "true", "yes")  # noqa: E731
        if flag("overwrite_drift"):
            self.log.warning("%s asked a sync that overwrites SLURM's hand-made changes", self.username)
        self.write_json(await self.service.sync(dry_run=flag("dry_run"), overwrite_drift=flag("overwrite_drift")))


class DiskHandler(QuotaHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        reading = await self.in_store(self.store.disk_usage)
        self.write_json({"pass": self.service.last_disk, "backend": self.service.disk_backend or None,
                         "usage": [u.to_dict() for u in reading]})


class ProjectsHandler(QuotaHandler):
    @web.authenticated
    async def get(self):
        names = await self.in_store(self.store.project_names)
        projects = [await self.in_store(self.store.project, n) for n in names]
        used = await self.project_gpu_hours()
        me = self.username
        listed = []
        for p in projects:
            full = self.is_admin() or me in p.managers or me in p.members
            listed.append({**project_json(p, full), "member": me in p.members, "manager": me in p.managers,
                           **({"gpu_hours_used": used.get(p.name.lower(), 0.0)} if full else {})})
        self.write_json({"projects": listed})

    @web.authenticated
    async def post(self):
        self.require_admin()
        body = self.json_body()
        unknown = sorted(set(body) - {"name", "description", "template", "managers"})
        if unknown:
            raise web.HTTPError(400, f"unknown field {', '.join(unknown)}")
        raw = body.get("template") or {}
        if not isinstance(raw, dict):
            raise web.HTTPError(400, "template: must be an object")
        partitions = raw.get("partitions") or []
        if not isinstance(partitions, list) or not all(isinstance(p, str) for p in partitions):
            raise web.HTTPError(400, "template.partitions: must be a list of partition names")
        try:
            template = ProjectTemplate(**{**raw, "partitions": tuple(partitions)})
        except TypeError as e:
            raise web.HTTPError(400, f"template: {e}") from None
        except LimitError as e:
            raise web.HTTPError(400, f"template.{e}") from None
        project = await self.in_store(self.store.create_project, body.get("name"), template,
                                      body.get("managers") or [], self.username, body.get("description") or "")
        self.write_json({"project": project_json(project, True), "sync": await self.synced()}, 201)


class RequestsHandler(QuotaHandler):
    async def project(self, name: str) -> Project:
        return await self.in_store(self.store.project, name)

    async def require_manager(self, name: str) -> Project:
        project = await self.project(name)
        self.require(self.is_admin() or self.username in project.managers,
                     f"only the managers of project {name} and admins decide its requests")
        return project

    @web.authenticated
    async def get(self, name: str):
        await self.require_manager(name)
        requests = await self.in_store(self.store.requests, name)
        self.write_json({"requests": [{**vars(r), "created_at": r.created_at.isoformat(),
                                       "decided_at": r.decided_at.isoformat() if r.decided_at else None}
                                      for r in requests]})

    @web.authenticated
    async def post(self, name: str):
        message = self.json_body().get("message", "")
        request = await self.in_store(self.store.request_membership, name, self.username, message)
        self.write_json({"request": {"id": request.id, "project": name, "user": request.user,
                                     "state": request.state}}, 201)


class DecisionHandler(RequestsHandler):
    @web.authenticated
    async def post(self, name: str, request_id: str):
        approve = self.json_body().get("approve")
        if not isinstance(approve, bool):
            raise web.HTTPError(400, "approve: must be true or false")
        decided, sync = await self.decide_request(name, int(request_id), approve)
        self.write_json({"request": {"id": decided.id, "user": decided.user, "state": decided.state}, "sync": sync})


def handlers() -> list[tuple[str, type, dict]]:
    name = r"([^/]+)"
    return [
        (r"api/users", UsersHandler, {}),
        (rf"api/users/{name}", UserHandler, {}),
        (rf"api/users/{name}/override", OverrideHandler, {}),
        (r"api/audit", AuditHandler, {}),
        (r"api/sync", SyncHandler, {}),
        (r"api/disk", DiskHandler, {}),
        (r"api/projects", ProjectsHandler, {}),
        (rf"api/projects/{name}/requests", RequestsHandler, {}),
        (rf"api/projects/{name}/requests/(\d+)", DecisionHandler, {}),
    ]
