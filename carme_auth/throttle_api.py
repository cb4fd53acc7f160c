"""`/hub/api/carme/login-throttle`: the login throttle, for admins (scope `admin:users`).

    GET                                  -> {"limits": {...}, "locked": [...], "failing": [...]}
    DELETE ?kind=user|address&key=NAME   -> 204: that cool-down ends now (logged); 404: there was none

Registered by CarmeLDAPAuthenticator.get_handlers (the hub adds its /hub prefix).
"""

from __future__ import annotations

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .names import shorten
from carme_core.throttle import ADDRESS, USER

PATH = r"/api/carme/login-throttle"
SCOPE = "admin:users"


class LoginThrottleHandler(APIHandler):
    def _throttle(self):
        if SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"the {SCOPE} scope is needed to see the login throttle")
        return self.authenticator.throttle

    async def get(self):
        self.finish(self._throttle().snapshot())

    async def delete(self):
        throttle = self._throttle()
        kind, key = self.get_argument("kind", ""), self.get_argument("key", "")
        if kind not in (USER, ADDRESS):
            raise web.HTTPError(400, f"kind must be {USER!r} or {ADDRESS!r}, not {shorten(kind)}")
        if not key:
            raise web.HTTPError(400, "key (the user name or address) is missing")
        if not throttle.release(kind, key):
            raise web.HTTPError(404, f"no login cool-down for {kind} {shorten(key)}")
        who = getattr(self.current_user, "name", "?")
        self.log.warning("Login throttle: %s ended the cool-down of %s %s", who, kind, shorten(key))
        self.set_status(204)
        self.finish()
