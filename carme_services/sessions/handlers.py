"""carme-sessions' API and page (JSON under <prefix>api/; `?user=U` or `"user": U` acts for another user):

    GET  api/sessions                  the cards of the caller's servers (default and named)   read (own) | admin
    GET  api/history                   their recent sessions from sacct, newest first          read (own) | admin
    GET  api/extensions                the extensions' audit: the caller's (admins: everyone's) read (own) | admin
    POST api/sessions/SERVER/extend    {"minutes": N}: +N minutes, admitted like a spawn       read (own) | admin
    POST api/sessions/SERVER/relaunch  [{"job_id": J}]: start it again with the same choices   read (own) | admin
    POST api/sessions/SERVER/stop      stop it (through the hub's API)                          read (own) | admin
    GET  /                             the page: cards and history, updated by polling the API
    POST /                             the page's forms (action=extend|relaunch|stop), with the XSRF token

SERVER is the server's name, empty for the default server (`api/sessions//extend`, as the hub's
own `users/U/servers/` names it). Scopes are checked inside the handlers with JupyterHub's
check_scopes (`custom:carme-sessions:read!user` for a user's own). Answers: bad input 400 naming
the field; Carme's refusal 403 naming the limit (`limit`); not running, or SLURM's refusal, 409
with SLURM's words; the view not fresh 503.
"""

from __future__ import annotations

from tornado import web

from ..base import CarmeServiceHandler
from .errors import InputError, SessionError
from .extend import parse_extend
from .service import ADMIN_SCOPE, READ_SCOPE


class SessionsHandler(CarmeServiceHandler):
    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def target(self, user: str | None) -> str:
        """The user the caller acts for (themselves unless named); 403 unless they may."""
        user = user or self.username
        if not isinstance(user, str) or len(user) > 255:
            raise web.HTTPError(400, "user: must be a user name")
        self.require(self.is_admin() or self.has_scope(READ_SCOPE, user=user),
                     f"the sessions of {user} need {READ_SCOPE}!user={user} (or {ADMIN_SCOPE})")
        return user

    async def model(self, user: str) -> dict:
        return await self.service.hub_user(user)

    def refuse(self, e: SessionError) -> None:
        self.write_json({"status": e.status, "message": e.message, **({"limit": e.limit} if e.limit else {})}, e.status)

    async def act(self, action: str, user: str, server: str, body: dict) -> dict:
        """One action for `user`'s `server` (SessionError, InputError on a refusal)."""
        service, actor = self.service, self.username
        if action == "extend":
            minutes, _ = parse_extend(body, actor, service.extend_max_minutes)
            return await service.extend(actor, await self.model(user), server, minutes)
        if action == "relaunch":
            unknown = sorted(set(body) - {"job_id", "user"})
            if unknown:
                raise InputError(unknown[0], "unknown field (fields: job_id, user)")
            job_id = body.get("job_id") or None
            if job_id is not None and not (isinstance(job_id, str) and job_id.isdigit() and len(job_id) <= 12):
                raise InputError("job_id", "must be a SLURM job id (digits)")
            return await service.relaunch(actor, await self.model(user), server, job_id)
        if set(body) - {"user"}:
            raise InputError(sorted(set(body) - {"user"})[0], "unknown field (fields: user)")
        return await service.stop(actor, await self.model(user), server)


class CardsHandler(SessionsHandler):
    @web.authenticated
    async def get(self):
        user = self.target(self.get_argument("user", None))
        try:
            self.write_json(await self.service.sessions(await self.model(user)))
        except SessionError as e:
            self.refuse(e)


class HistoryHandler(SessionsHandler):
    @web.authenticated
    async def get(self):
        user = self.target(self.get_argument("user", None))
        self.write_json(await self.service.history(user))


class ExtensionsHandler(SessionsHandler):
    @web.authenticated
    async def get(self):
        named = self.get_argument("user", None)
        user = None if self.is_admin() and not named else self.target(named)
        try:
            limit = min(1000, int(self.get_argument("limit", "100")))
        except ValueError:
            raise web.HTTPError(400, "limit: must be a whole number") from None
        self.write_json({"extensions": await self.service.in_store(self.service.store.extensions, user, None, limit)})


class ActionHandler(SessionsHandler):
    @web.authenticated
    async def post(self, server: str, action: str):
        body = self.json_body()
        user = self.target(body.get("user"))
        try:
            answer = await self.act(action, user, server, body)
        except InputError as e:
            raise web.HTTPError(400, str(e)) from None
        except SessionError as e:
            return self.refuse(e)
        self.write_json(answer, 202 if action in ("relaunch", "stop") else 200)


class SessionsPage(SessionsHandler):
    async def show(self, user: str, notice: str = "", kind: str = "success") -> None:
        service = self.service
        try:
            model = await self.model(user)
        except SessionError as e:
            raise web.HTTPError(e.status, e.message) from None
        self.finish(self.render_page("sessions.html", data=await service.sessions(model),
                                     history=await service.history(user), target=user, is_admin=self.is_admin(),
                                     notice=notice, notice_kind=kind))

    @web.authenticated
    async def get(self):
        await self.show(self.target(self.get_argument("user", None)))

    @web.authenticated
    async def post(self):
        user = self.target(self.get_body_argument("user", "") or None)
        action, server = self.get_body_argument("action", ""), self.get_body_argument("server", "")
        if action not in ("extend", "relaunch", "stop"):
            raise web.HTTPError(400, "action: must be extend, relaunch or stop")
        body = {"extend": {"minutes": self.get_body_argument("minutes", "")},
                "relaunch": {"job_id": self.get_body_argument("job_id", "")}}.get(action, {})
        label = server or "default server"
        try:
            answer = await self.act(action, user, server, body)
        except (InputError, SessionError) as e:
            return await self.show(user, f"{label}: {getattr(e, 'message', None) or e}", "danger")
        notice = {"extend": f"{label}: +{answer.get('minutes')} min, time limit now {answer.get('to_minutes')} min.",
                  "relaunch": f"{label}: starting again with the same choices.",
                  "stop": f"{label}: stopping."}[action]
        await self.show(user, notice)


def handlers() -> list[tuple[str, type, dict]]:
    return [
        (r"api/sessions", CardsHandler, {}),
        (r"api/history", HistoryHandler, {}),
        (r"api/extensions", ExtensionsHandler, {}),
        (r"api/sessions/([^/]*)/(extend|relaunch|stop)", ActionHandler, {}),
        (r"/?", SessionsPage, {}),
    ]
