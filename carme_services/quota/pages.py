"""carme-quota's pages in the hub's look: My usage (with a chart), Projects, and all users for admins.

They show what the API serves (`api.QuotaHandler.report`) and change things through the same
store calls; forms post with the page's XSRF token (HubOAuth refuses them without).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tornado import web

from carme_quota.disk import DiskUse, over_words, use_words
from carme_quota.limits import LIMIT_FIELDS, LimitError, Limits

from ..charts import bar_chart
from .api import QuotaHandler

SOURCES = {"override": "your override", "role_default": "your role"}


def _shown(field: str, value) -> str:
    if value is None:
        return "no limit"
    unit = LIMIT_FIELDS[field][1]
    return f"{value:g} {unit}" if isinstance(value, float) else f"{value} {unit}"


def limit_rows(report: dict) -> list[dict]:
    """One row per limit: the user's use next to it, and which layer set it."""
    usage, limits = report["usage"], report["limits"]
    use = {"servers": usage["servers"], "jobs_per_day": usage["started_today"],
           "gpu_hours": usage["gpu_hours_used"] + usage["gpu_hours_held"]}
    rows = []
    for field, (label, unit, _) in LIMIT_FIELDS.items():
        source = next((SOURCES[layer] for layer in ("override", "role_default") if limits[layer].get(field) is not None), "")
        used = use.get("servers" if field == "max_servers" else field)
        rows.append({"field": field, "label": label, "limit": _shown(field, limits["effective"].get(field)),
                     "use": "" if used is None else f"{used:g} {unit}", "source": source})
    return rows


def summary(report: dict) -> str:
    usage, effective = report["usage"], report["limits"]["effective"]
    resets = datetime.fromisoformat(usage["resets_at"]) if usage["resets_at"] else None
    hours = f"GPU-hours this period: {usage['gpu_hours_used']:g}"
    hours += f" of {effective['gpu_hours']:g}" if effective["gpu_hours"] is not None else " (no limit)"
    hours += f", resets {resets.day} {resets:%b}" if resets else ""
    servers = f"servers: {usage['servers']}" + (f" of {effective['max_servers']}" if effective["max_servers"] is not None else "")
    return f"{hours} · {servers}"


def near_budget(report: dict, threshold: float) -> str:
    """A warning once the period's GPU-hours (used and held by running servers) pass `threshold` of the budget."""
    budget, usage = report["limits"]["effective"]["gpu_hours"], report["usage"]
    used = usage["gpu_hours_used"] + usage["gpu_hours_held"]
    if budget is None or not threshold or used < threshold * budget:
        return ""
    return (f"You have used {used:g} of your {budget:g} GPU-hours ({100 * used / budget:.0f} %) this period: "
            "servers that do not fit the rest cannot start.")


def disk_rows(report: dict) -> list[dict]:
    """The disk pass's last reading, one row per user or project group: the use in words, the share of
    the space limit (for a bar), and why writes may fail when over a limit."""
    rows = []
    for raw in report.get("disk", []):
        use = DiskUse.from_dict(raw)
        share = min(100, round(100 * use.used_bytes / use.limit_bytes)) if use.limit_bytes else None
        rows.append({"what": "you" if use.kind == "user" else f"project {use.name}", "words": use_words(use),
                     "share": share, "over": over_words(use), "measured_at": (raw.get("measured_at") or "")[:16]})
    return rows


def daily_chart(report: dict, now: datetime) -> str:
    """GPU-hours per day from the start of the usage period (at most 31 days back) until today."""
    per_day = {d["day"]: d["gpu_hours"] for d in report.get("history", [])}
    first = now.date() - timedelta(days=30)
    if report["usage"]["period_start"]:
        first = max(first, datetime.fromisoformat(report["usage"]["period_start"]).date())
    days = [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]
    return bar_chart("GPU-hours per day this period", [f"{d.day} {d:%b}" for d in days],
                     [per_day.get(d.isoformat(), 0.0) for d in days], "GPU-hours")


class UsagePage(QuotaHandler):
    @web.authenticated
    async def get(self):
        report = await self.report(self.current_user, await self.view())
        self.finish(self.render_page("quota_usage.html", report=report, rows=limit_rows(report),
                                     warning=near_budget(report, self.service.quota.budget_warning),
                                     summary=summary(report), chart=daily_chart(report, datetime.now()),
                                     disk=disk_rows(report),
                                     is_admin=self.is_admin(), snapshot_age=report["snapshot"].get("last_snapshot")))


class ProjectsPage(QuotaHandler):
    @web.authenticated
    async def get(self, notice: str = "", kind: str = "success"):
        me, projects = self.username, []
        used = await self.project_gpu_hours()
        for name in await self.in_store(self.store.project_names):
            p = await self.in_store(self.store.project, name)
            manages = self.is_admin() or me in p.managers
            t = p.template
            entry = {"name": p.name, "description": p.description, "managers": p.managers,
                     "member": me in p.members,
                     "template_rows": [(label, _shown(kind_, getattr(t, f)))
                                       for f, kind_, label in (("gpus_at_once", "gpus_per_job", "GPUs at once"),
                                                               ("gpus_per_job", "gpus_per_job", "GPUs per server"),
                                                               ("max_runtime_minutes", "max_runtime_minutes", "runtime"),
                                                               ("gpu_hours", "gpu_hours", "GPU-hours per period"),
                                                               ("disk_gib", "disk_gib", "group disk space"),
                                                               ("disk_inodes", "disk_inodes", "group files"))],
                     "requests": await self.in_store(self.store.requests, p.name) if manages else []}
            if manages or entry["member"]:
                entry["members"] = p.members
                entry["template_rows"].append(("used this period", f"{used.get(p.name.lower(), 0.0):g} GPU-hours"))
            projects.append(entry)
        self.finish(self.render_page("quota_projects.html", projects=projects, notice=notice, notice_kind=kind))

    @web.authenticated
    async def post(self):
        action, project = self.get_body_argument("action", ""), self.get_body_argument("project", "")
        try:
            if action == "request":
                await self.in_store(self.store.request_membership, project, self.username,
                                    self.get_body_argument("message", ""))
                notice = f"Asked to join {project}: its managers decide."
            elif action in ("approve", "deny"):
                request_id = self.get_body_argument("request_id", "")
                if not request_id.isdigit():
                    raise web.HTTPError(400, "request_id: must be a request's number")
                decided, _ = await self.decide_request(project, int(request_id), action == "approve")
                notice = f"{decided.user} {'approved' if action == 'approve' else 'denied'} for {project}."
            else:
                raise web.HTTPError(400, "action: must be request, approve or deny")
        except web.HTTPError as e:
            await self.get(e.log_message or str(e), "danger")
            return
        await self.get(notice)


class AdminPage(QuotaHandler):
    @web.authenticated
    async def get(self, notice: str = "", kind: str = "success"):
        self.require_admin()
        view = await self.view()
        reports = [await self.report(u, view) for u in await self.service.hub_client().get_all("users")]
        reports.sort(key=lambda r: (-r["usage"]["gpu_hours_used"], r["user"]))
        last = self.service.last_sync
        sync_text = (f"{datetime.fromtimestamp(last['at']):%H:%M:%S}, {len(last['commands'])} commands"
                     if last.get("at") else "not yet") + (f", error: {last['error']}" if last.get("error") else "")
        self.finish(self.render_page("quota_admin.html", reports=reports, notice=notice, notice_kind=kind,
                                     fields=[(f, v[0]) for f, v in LIMIT_FIELDS.items()],
                                     drift=[d for d in last.get("drift", []) if not d["overwritten"]],
                                     sync_text=sync_text))

    @web.authenticated
    async def post(self):
        self.require_admin()
        user = self.get_body_argument("user", "")
        raw = {f: self.get_body_argument(f, "").strip() for f in LIMIT_FIELDS}
        try:
            values = {f: (float(v) if f == "gpu_hours" else int(v)) for f, v in raw.items() if v}
        except ValueError:
            await self.get(f"{user}: limits must be numbers (or empty for the role's default)", "danger")
            return
        try:
            limits = Limits.from_mapping(values, "override")
        except LimitError as e:
            await self.get(f"{user}: {e}", "danger")
            return
        await self.hub_user(user)
        await self.in_store(self.store.set_override, user, limits, self.username)
        result = await self.synced()
        await self.get(f"Saved {user}'s override" + (f"; sync failed: {result['error']}" if result["error"] else
                                                      ", and SLURM has it."))


def page_handlers() -> list[tuple[str, type, dict]]:
    return [(r"/?", UsagePage, {}), (r"projects", ProjectsPage, {}), (r"admin", AdminPage, {})]
