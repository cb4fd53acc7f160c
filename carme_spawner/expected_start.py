"""When would this request start? SLURM's own estimate, for the form, before Start.

    GET /hub/api/carme/expected-start/users/NAME[/servers/SERVER]?gpus=2&gpu_type=a100&runtime=1:00&...

The options are the form's, parsed exactly as a spawn's (400 naming the field for bad ones). The
batch script the spawn would submit goes to `sbatch --test-only`, run AS THE USER (their account,
QOS and limits apply, as they would to the real job), which asks the scheduler and submits
nothing: "sbatch: Job 1441 to start at 2026-12-02T14:20:00 using 2 processors on nodes carme-n1
in partition batch". One estimate per distinct request and user is kept for
`CarmeSpawner.estimate_cache_seconds`; concurrent asks for the same request share one call. A slow or
failing SLURM never breaks the form: the answer then says the estimate is unavailable, and why.

The scope is JupyterHub's own `servers` (a user estimates for themselves; admins for anyone).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from carme_slurm import SlurmCommandError, command_env, run_command

from .options import options_from_form_data
from .progress import format_time

PATH = r"/api/carme/expected-start/users/([^/]+)(?:/servers/([^/]*))?"
# 25.05 (src/api/allocate.c): "... to start at T on cluster NAME a using N processors ..." (the " a" is SchedMD's)
_TEST_ONLY = re.compile(
    r"Job \d+ to start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?: on cluster \S+)?(?: a)? using (\d+) processors on nodes "
    r"(\S+) in partition (\S+)"
)
#: within this many seconds of now, "starts now" (the controller schedules once a second)
NOW_SLACK_SECONDS = 60


@dataclass(frozen=True)
class Estimate:
    start: float  # epoch seconds
    cpus: int
    nodes: str
    partition: str


def parse_test_only(text: str) -> Estimate:
    """SLURM's `sbatch --test-only` answer (stderr); the start is the controller's local time."""
    m = _TEST_ONLY.search(text or "")
    if not m:
        raise ValueError(f"not an sbatch --test-only answer: {text.strip()[:200]!r}")
    start = datetime.fromisoformat(m.group(1)).timestamp()
    return Estimate(start=start, cpus=int(m.group(2)), nodes=m.group(3), partition=m.group(4))


def describe(estimate: Estimate, now: float) -> dict:
    """The answer the form shows: starts now, or the expected start and how long until then."""
    wait = max(0.0, estimate.start - now)
    starts_now = wait <= NOW_SLACK_SECONDS
    # the same words as a waiting spawn's "SLURM expects it to start at ..." (with the date when not today)
    words = "starts now" if starts_now else f"expected start ~{format_time(round(estimate.start), now)}"
    return {"available": True, "starts_now": starts_now, "start": estimate.start, "wait_seconds": round(wait),
            "partition": estimate.partition, "nodes": estimate.nodes, "message": words}


def unavailable(reason: str) -> dict:
    return {"available": False, "message": f"estimate unavailable: {reason}"}


class EstimateCache:
    """Estimates by key for `ttl` seconds; one call per key at a time (others await it)."""

    def __init__(self, max_entries: int = 2000):
        self.max_entries = max_entries
        self._entries: dict[object, tuple[float, asyncio.Future]] = {}

    async def get(self, key, ttl: float, compute):
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit and now - hit[0] < ttl and not (hit[1].done() and hit[1].exception()):
            return await asyncio.shield(hit[1])
        if len(self._entries) >= self.max_entries:  # drop the oldest half
            for old in sorted(self._entries, key=lambda k: self._entries[k][0])[: self.max_entries // 2]:
                del self._entries[old]
        future = asyncio.ensure_future(compute())
        self._entries[key] = (now, future)
        return await asyncio.shield(future)


CACHE = EstimateCache()


async def estimate_for(spawner, options: dict) -> dict:
    """SLURM's estimate for `options` on `spawner`'s user (raises SpawnFailed(400) for bad options)."""
    prepared = await spawner.parse_request(options)
    account, request = prepared.account, prepared.request

    async def ask() -> dict:
        names = {name: "" for name in spawner.get_env()}  # the script names the variables; no values
        script = spawner.render(prepared, names)
        try:
            text = await run_command([*spawner.user_prefix(account.username), "sbatch", "--test-only"], input=script,
                                     env=command_env(), timeout=spawner.estimate_timeout, output="stderr")
            return describe(parse_test_only(text), time.time())
        except SlurmCommandError as e:
            detail = str(e).split(": exit ", 1)[-1]
            return unavailable(detail.replace("sbatch: error: ", "")[:300])
        except ValueError as e:
            return unavailable(str(e))

    return await CACHE.get((account.username, request), spawner.estimate_cache_seconds, ask)


class ExpectedStartHandler(APIHandler):
    @needs_scope("servers")
    async def get(self, user_name: str, server_name: str | None = None):
        from .spawner import CarmeSpawner, SpawnFailed

        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name}")
        spawner = user.get_spawner(server_name or "", replace_failed=True)
        if not isinstance(spawner, CarmeSpawner):
            raise web.HTTPError(404, "this server is not started by Carme")
        arguments = {k: self.get_arguments(k) for k in self.request.arguments if k != "_xsrf"}
        try:
            answer = await estimate_for(spawner, options_from_form_data(arguments))
        except SpawnFailed as e:  # bad options: 400 naming the field; a misconfigured site: 500
            raise web.HTTPError(e.status_code, e.message) from None
        self.finish(answer)
