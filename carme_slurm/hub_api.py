"""The hub's SLURM view over its REST API, read-only:

    GET /hub/api/carme/slurm/jobs           every job squeue lists, Carme's marked (scope custom:carme-slurm:read)
    GET /hub/api/carme/slurm/nodes          nodes with GPUs per type (total, allocated, free), and totals
    GET /hub/api/carme/slurm/reservations   SLURM's reservations
    GET /hub/api/carme/slurm/usage          every association's GPU-minutes this period (sshare)
    GET /hub/api/carme/slurm/recent_jobs    every job of the last SlurmView.accounting_window_days (sacct)
    GET /hub/api/carme/status               is SLURM answering the view (admin:servers)

Each answer carries its snapshot's health (when it began, whether SLURM answers, the last error),
so a reader can tell a fresh answer from the last good one. Admins and Carme's services hold the
scope (`hub_wiring()` declares it and the roles that grant it).
"""

from __future__ import annotations

from jupyterhub.apihandlers import APIHandler, default_handlers
from tornado import web

from carme_core.roles import ADMIN

from . import metrics
from .view import VIEW_SCOPE, SlurmView

STATUS_PATH = r"/api/carme/status"
VIEW_PATH = r"/api/carme/slurm/(jobs|nodes|reservations|usage|recent_jobs)"


def hub_view(handler) -> SlurmView:
    """The hub's one SLURM view, started with the hub's own configuration."""
    return SlurmView.shared(config=handler.settings.get("config"), log=handler.log)


class SlurmViewHandler(APIHandler):
    async def get(self, kind: str):
        # checked here, not with @needs_scope: custom scopes exist only once the hub has started
        if VIEW_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"the {VIEW_SCOPE} scope is needed to read Carme's view of SLURM")
        view = hub_view(self)
        reflector = getattr(view, kind)
        if reflector not in view.reflectors:
            raise web.HTTPError(404, f"the hub does not read SLURM's {kind} (SlurmView.accounting_interval is 0)")
        if reflector.snapshot_started == 0:  # the hub just started: wait for the first answer
            await reflector.wait_for_snapshot(0, timeout=view.command_timeout, kick=False)
        self.finish(getattr(view, f"{kind}_document")())


class CarmeStatusHandler(APIHandler):
    async def get(self):
        if "admin:servers" not in self.expanded_scopes:
            raise web.HTTPError(403, "the admin:servers scope is needed to see Carme's SLURM status")
        view = SlurmView.current()
        if view is None:
            self.finish({"slurm": None, "message": "no Carme server has been started or polled yet"})
            return
        health = view.health()
        self.finish({"slurm": health["jobs"], "nodes": health["nodes"], "reservations": health["reservations"],
                     "carme_jobs": health["carme_jobs"]})


def replace_api_handler(path: str, handler) -> None:
    """Serve the hub API `path` with `handler` instead of any other handler (idempotent)."""
    default_handlers[:] = [h for h in default_handlers if h[0] != path]
    default_handlers.append((path, handler))


def install() -> None:
    replace_api_handler(VIEW_PATH, SlurmViewHandler)
    replace_api_handler(STATUS_PATH, CarmeStatusHandler)
    metrics.install(SlurmView.current)  # the view's numbers at /hub/metrics


def hub_wiring(admin_users) -> dict:
    """The custom scope of the view and the role that gives it to the hub's admins."""
    return {
        "custom_scopes": {VIEW_SCOPE: {"description": "Read Carme's view of SLURM: jobs, nodes, reservations, usage."}},
        "roles": [
            {
                "name": "carme-slurm-readers",
                "description": "Admins may read the hub's view of SLURM.",
                "users": sorted(admin_users),
                "groups": [ADMIN],  # LDAP admins are in the hub group named after their role
                "scopes": [VIEW_SCOPE],
            }
        ],
    }
