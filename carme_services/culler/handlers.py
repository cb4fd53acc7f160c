"""carme-culler's API and page (JSON under <prefix>api/):

    GET  api/servers          the last pass's verdict per server: the caller's (admins: everyone's)  read (own) | admin
    POST api/keep-running     {server: NAME[, user: U]} restart the server's idle clock              read (own) | admin
    GET  api/culls            servers stopped as idle, newest last: the caller's (admins: all)        read (own) | admin
    GET  api/pass             the last pass: servers, stopped, would_stop (dry run), error           admin
    GET  api/samples/JOB      the GPU samples kept for a job (time, max utilisation %, memory MiB)   read (own) | admin
    GET  api/samples?since=T  every watched job's samples taken at or after T (epoch s)               admin
    GET  api/idle             idle and busy GPU-hours per hour (the tally) and per running server      admin
    GET  /                    the page: your servers, their idle state, Keep running

Scopes are checked with JupyterHub's check_scopes inside the handlers (`custom:carme-culler:read!user`).
"""

from __future__ import annotations

import time

from tornado import web

from ..base import CarmeServiceHandler
from .idle import keep_running_refusal
from .service import ADMIN_SCOPE, READ_SCOPE


class CullerHandler(CarmeServiceHandler):
    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def may_read(self, user: str) -> bool:
        return self.is_admin() or self.has_scope(READ_SCOPE, user=user)

    def visible(self, rows: list[dict]) -> list[dict]:
        admin = self.is_admin()
        return [r for r in rows if admin or (r["user"] == self.username and self.may_read(r["user"]))]

    def keep_running(self, user: str, server: str) -> dict:
        """Press Keep running for `user`'s `server`: 404 unknown, 409 refused (the words say why)."""
        self.require(self.may_read(user), f"keeping {user}'s servers running needs {READ_SCOPE} for {user}")
        found = [(key, w) for key, w in self.service.watches.items() if key[:2] == (user, server)]
        if not found:
            raise web.HTTPError(404, f"server {server!r} of {user}: not a running server the culler watches")
        (key, watch), now = found[0], time.time()
        refusal = keep_running_refusal(watch, self.service.policy, now)
        if refusal:
            raise web.HTTPError(409, f"keep running: {refusal}")
        watch.kept.append(now)
        watch.stop_at = None
        self.log.info("keep running: %s pressed it for %s/%s (job %s), %d of %d", self.username, user, server,
                      key[2], len(watch.kept), self.service.keep_running_max)
        return {"user": user, "server": server, "job_id": key[2], "kept_at": now,
                "keep_running_left": max(0, self.service.keep_running_max - len(watch.kept))}


class ServersHandler(CullerHandler):
    @web.authenticated
    def get(self):
        self.require(self.may_read(self.username), f"needs {READ_SCOPE}")
        last = self.service.last
        self.write_json({"at": last.get("at"), "dry_run": last.get("dry_run"), "error": last.get("error"),
                         "servers": self.visible(last.get("servers", []))})


class KeepRunningHandler(CullerHandler):
    @web.authenticated
    def post(self):
        body = self.json_body()
        unknown = sorted(set(body) - {"user", "server"})
        if unknown:
            raise web.HTTPError(400, f"unknown field {', '.join(unknown)} (fields: user, server)")
        server, user = body.get("server", ""), body.get("user", self.username)
        if not isinstance(server, str) or not isinstance(user, str) or len(server) > 255 or not user:
            raise web.HTTPError(400, "server: must be a server name (\"\" for the default server); user: a user name")
        self.write_json(self.keep_running(user, server))


class CullsHandler(CullerHandler):
    @web.authenticated
    def get(self):
        self.require(self.may_read(self.username), f"needs {READ_SCOPE}")
        self.write_json({"culls": self.visible(list(self.service.culls))})


class PassHandler(CullerHandler):
    @web.authenticated
    def get(self):
        self.require(self.is_admin(), f"the culler's pass needs {ADMIN_SCOPE} (the hub's admins)")
        self.write_json(self.service.last)


class SamplesHandler(CullerHandler):
    @web.authenticated
    def get(self, job_id: str):
        found = [(key, w) for key, w in self.service.watches.items() if key[2] == job_id]
        if not found or not self.may_read(found[0][0][0]):
            raise web.HTTPError(404, f"job {job_id}: no samples you may read")
        (user, server, _), watch = found[0]
        self.write_json({"job_id": job_id, "user": user, "server": server, "samples": samples_json(watch)})


class AllSamplesHandler(CullerHandler):
    @web.authenticated
    def get(self):
        self.require(self.is_admin(), f"every job's samples need {ADMIN_SCOPE} (the hub's admins, the cockpit)")
        try:
            since = float(self.get_argument("since", "0"))
        except ValueError:
            raise web.HTTPError(400, "since: must be a time in epoch seconds") from None
        self.write_json({"jobs": [
            {"job_id": job_id, "user": user, "server": server, "samples": samples_json(watch, since)}
            for (user, server, job_id), watch in sorted(self.service.watches.items(), key=lambda kv: kv[0][2])]})


class IdleHandler(CullerHandler):
    @web.authenticated
    def get(self):
        self.require(self.is_admin(), f"the idle GPU-hours need {ADMIN_SCOPE} (the hub's admins, the cockpit)")
        servers = [{k: r[k] for k in ("user", "name", "job_id", "gpus", "account", "idle_gpu_hours", "busy_gpu_hours")}
                   for r in self.service.last.get("servers", []) if r.get("gpus")]
        hours = self.service.tally.rows()
        self.write_json({"threshold": self.service.gpu_threshold, "interval": self.service.interval,
                         "hours": hours, "servers": servers,
                         "idle_gpu_hours": round(sum(h["idle_gpu_hours"] for h in hours), 4),
                         "busy_gpu_hours": round(sum(h["busy_gpu_hours"] for h in hours), 4)})


class CullerPage(CullerHandler):
    @web.authenticated
    def get(self, notice: str = "", kind: str = "success"):
        self.require(self.may_read(self.username), f"needs {READ_SCOPE}")
        last = self.service.last
        self.finish(self.render_page("culler.html", servers=self.visible(last.get("servers", [])), now=time.time(),
                                     last=last, culls=self.visible(list(self.service.culls))[-20:],
                                     is_admin=self.is_admin(), notice=notice, notice_kind=kind,
                                     idle_minutes=self.service.idle_minutes, warn_minutes=self.service.warn_minutes))

    @web.authenticated
    def post(self):
        user, server = self.get_body_argument("user", self.username), self.get_body_argument("server", "")
        try:
            answer = self.keep_running(user, server)
        except web.HTTPError as e:
            if e.status_code == 403:
                raise
            return self.get(e.log_message, "danger")
        return self.get(f"{server or 'default server'}: kept running ({answer['keep_running_left']} more allowed).")


def samples_json(watch, since: float = 0.0) -> list[dict]:
    """A job's kept samples taken at or after `since`, as the API gives them."""
    return [{"at": t, "utilization": u, "memory_mib": m} for t, u, m in watch.samples if t >= since]


def handlers() -> list[tuple[str, type, dict]]:
    return [
        (r"api/servers", ServersHandler, {}),
        (r"api/keep-running", KeepRunningHandler, {}),
        (r"api/culls", CullsHandler, {}),
        (r"api/pass", PassHandler, {}),
        (r"api/samples/(\d+)", SamplesHandler, {}),
        (r"api/samples", AllSamplesHandler, {}),
        (r"api/idle", IdleHandler, {}),
        (r"/?", CullerPage, {}),
    ]
