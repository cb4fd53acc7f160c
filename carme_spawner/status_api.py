"""`GET /hub/api/carme/status`: is SLURM answering the hub's shared watch? (admins only)

When squeue has failed for longer than `CarmeSpawner.slurm_stale_warning_after`, the answer
carries a warning: servers are kept as they were, but their state is not fresh.
"""

from __future__ import annotations

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .job_reflector import SlurmJobReflector
from .port_callback import replace_api_handler

PATH = r"/api/carme/status"


class CarmeStatusHandler(APIHandler):
    async def get(self):
        if "admin:servers" not in self.expanded_scopes:
            raise web.HTTPError(403, "the admin:servers scope is needed to see Carme's SLURM status")
        watch = SlurmJobReflector.current()
        if watch is None:
            self.finish({"slurm": None, "message": "no Carme server has been started or polled yet"})
            return
        self.finish({"slurm": watch.health(), "carme_jobs": len(watch.jobs)})


def install() -> None:
    replace_api_handler(PATH, CarmeStatusHandler)
