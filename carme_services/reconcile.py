"""carme-reconcile: find SLURM jobs that Carme started but no hub server claims (orphans).

A hub-managed service in the style of jupyterhub-idle-culler, one file:

    python -m carme_services.reconcile [--policy report|cancel] [--interval 300] [--grace 120]
                                       [--job-prefix carme-] [--once]

Each pass reads the hub's active servers (REST API, this service's own token, which needs
list:users, read:users, read:servers and admin:server_state), then makes ONE `squeue` call. A job
is an orphan when it is active, its name has the job prefix, it is older than --grace, and no
hub server claims it: no ready or pending server has its job id in `state.job_id`, and its
comment `carme:<user>/<server-slug>` names no server that is still spawning (a spawn's job id
reaches the hub's state only once sbatch returned). `report` logs orphans, `cancel` also
scancels them. Adopting a job is not offered: the hub cannot verify the server token inside it.

Servers whose job vanished are the hub's business (CarmeSpawner.poll() marks them stopped, with
the reason in state["last_failure"], also at hub start); this service only reports a ready
server whose job SLURM does not list, and never stops servers.

`GET <prefix>api/orphans` serves the last pass as JSON, to holders of custom:carme-reconcile:read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlencode, urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from carme_spawner import slurm

READ_SCOPE = "custom:carme-reconcile:read"
PAGINATION = "application/jupyterhub-pagination+json"
POLICIES = ("report", "cancel")
ADOPT_REFUSAL = (
    "adopt is not supported: the hub cannot verify that a job it did not start holds a valid "
    "server token, so taking it over would route users to an unverified server; "
    "use report and start a new server"
)
log = logging.getLogger("carme-reconcile")


# ---- the decision (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class HubServer:
    user: str
    name: str  # "" for the default server
    ready: bool
    pending: str | None  # "spawn", "stop", ... while a transition runs
    job_id: str  # from the spawner state ("" when none)


@dataclass(frozen=True)
class Orphan:
    job_id: str
    user: str
    server: str | None  # the server slug from the job's comment (None: no Carme comment)
    state: str
    node: str
    age: int  # seconds since submission
    action: str = "reported"


def find_orphans(jobs, servers, now: float, grace: float, prefix: str) -> list[Orphan]:
    """The active jobs named `prefix...` that no server claims and that are older than `grace`.

    `now` is when the hub was read (before squeue): a job submitted later cannot be judged on
    that reading, and SLURM's submit_time is whole seconds, hence the extra second.
    """
    claimed = {s.job_id for s in servers if s.job_id and (s.ready or s.pending)}
    spawning = {(s.user, slurm.server_slug(s.name)) for s in servers if s.pending and not s.job_id}
    orphans = []
    for job in jobs:
        if not job.name.startswith(prefix) or not job.is_active or job.job_id in claimed:
            continue
        owner = slurm.parse_job_comment(job.comment)
        if owner in spawning or job.submit_time + 1 > now - grace:
            continue
        orphans.append(
            Orphan(
                job_id=job.job_id,
                user=owner[0] if owner else job.user,
                server=owner[1] if owner else None,
                state=job.state,
                node=job.batch_host or job.nodes or "-",
                age=max(0, int(now - job.submit_time)),
            )
        )
    return orphans


def find_vanished(jobs, servers) -> list[dict]:
    """Ready servers whose job SLURM does not list as active (the hub's poll should stop them)."""
    active = {j.job_id for j in jobs if not j.is_terminal}
    return [
        {"user": s.user, "server": s.name, "job_id": s.job_id}
        for s in servers
        if s.ready and s.job_id and s.job_id not in active
    ]


def servers_from_users(users: list[dict]) -> list[HubServer]:
    servers = []
    for user in users:
        if "servers" not in user:
            raise RuntimeError("the hub did not show servers: this service's token lacks read:servers")
        for name, model in user["servers"].items():
            if "state" not in model:
                # without the state every job would look unclaimed: refuse to judge at all
                raise RuntimeError("the hub did not show server state: this service's token lacks "
                                   "admin:server_state")
            job_id = str((model.get("state") or {}).get("job_id") or "")
            ready, pending = bool(model.get("ready")), model.get("pending")
            servers.append(HubServer(user["name"], name, ready, pending, job_id))
    return servers


# ---- one pass (hub API + squeue + scancel) ------------------------------------------------------


class Reconciler:
    def __init__(self, api_url: str, token: str, policy: str, grace: float, prefix: str):
        self.api_url, self.token = api_url.rstrip("/"), token
        self.policy, self.grace, self.prefix = policy, grace, prefix
        self.last: dict = {"last_pass": None, "policy": policy, "orphans": [], "vanished_servers": [],
                           "error": None}

    async def hub_servers(self) -> list[HubServer]:
        """Every active server with its state, page by page (stopped servers claim nothing)."""
        client, users, offset = AsyncHTTPClient(), [], 0
        while True:
            query = urlencode({"state": "active", "offset": offset, "limit": 200})
            response = await client.fetch(
                HTTPRequest(
                    f"{self.api_url}/users?{query}",
                    headers={"Authorization": f"token {self.token}", "Accept": PAGINATION},
                    request_timeout=60,
                )
            )
            page = json.loads(response.body)
            users.extend(page["items"])
            following = page["_pagination"]["next"]
            if not following:
                return servers_from_users(users)
            offset = following["offset"]

    async def run_pass(self) -> dict:
        now = time.time()
        try:
            servers = await self.hub_servers()
            jobs = await slurm.squeue_all()
        except Exception as e:  # doubt is not evidence: without both answers nothing is judged
            log.warning("pass skipped, keeping the last result: %s", e)
            self.last = {**self.last, "error": f"{type(e).__name__}: {e}", "error_time": now}
            return self.last
        orphans = []
        for orphan in find_orphans(jobs, servers, now, self.grace, self.prefix):
            if self.policy == "cancel":
                try:
                    await slurm.scancel(orphan.job_id)
                    orphan = replace(orphan, action="cancelled")
                except (slurm.SlurmCommandError, ValueError) as e:
                    orphan = replace(orphan, action=f"cancel failed: {e}")
            log.warning(
                "orphan SLURM job %s (user %s, server %r, %s on %s, age %d s): %s",
                orphan.job_id, orphan.user, orphan.server, orphan.state, orphan.node, orphan.age,
                orphan.action,
            )
            orphans.append(orphan)
        vanished = find_vanished(jobs, servers)
        for v in vanished:
            log.warning("server %s/%s is ready but SLURM does not list its job %s",
                        v["user"], v["server"], v["job_id"])
        active = sum(j.name.startswith(self.prefix) and j.is_active for j in jobs)
        log.info("pass done: %d servers, %d active Carme jobs, %d orphans, %d vanished servers",
                 len(servers), active, len(orphans), len(vanished))
        self.last = {
            "last_pass": now,
            "policy": self.policy,
            "grace": self.grace,
            "job_prefix": self.prefix,
            "orphans": [asdict(o) for o in orphans],
            "vanished_servers": vanished,
            "error": None,
        }
        return self.last

    async def run_forever(self, interval: float, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                await self.run_pass()
            except Exception:  # a bug must not end the service
                log.exception("unexpected error in a reconcile pass")
            await asyncio.sleep(interval)


# ---- the web side ---------------------------------------------------------------------------------


class OrphansHandler(HubOAuthenticated, web.RequestHandler):
    """The last pass as JSON, for tokens or OAuth sessions holding READ_SCOPE (others get 403)."""

    hub_scopes = {READ_SCOPE}

    def initialize(self, reconciler: Reconciler):
        self.reconciler = reconciler

    @web.authenticated
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.reconciler.last))


def make_app(reconciler: Reconciler, prefix: str) -> web.Application:
    return web.Application(
        [
            (prefix + "api/orphans", OrphansHandler, {"reconciler": reconciler}),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix.rstrip("/") + "/?", web.RedirectHandler, {"url": prefix + "api/orphans"}),
        ],
        cookie_secret=os.urandom(32),
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m carme_services.reconcile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--interval", type=float, default=300, help="seconds between passes (default 300)")
    parser.add_argument("--delay", type=float, default=5, help="seconds before the first pass (default 5)")
    parser.add_argument("--policy", default="report", help="report (default) or cancel orphans")
    parser.add_argument("--grace", type=float, default=120, help="never call a younger job an orphan (s)")
    parser.add_argument("--job-prefix", default="carme-", help="name prefix of Carme's jobs (default carme-)")
    parser.add_argument("--once", action="store_true", help="one pass, print it as JSON, exit")
    args = parser.parse_args(argv)
    if args.policy == "adopt":
        parser.exit(2, f"{parser.prog}: {ADOPT_REFUSAL}\n")
    if args.policy not in POLICIES:
        parser.error(f"--policy must be one of {', '.join(POLICIES)}, not {args.policy!r}")
    if args.interval <= 0 or args.grace < 0 or not args.job_prefix:
        parser.error("--interval must be > 0, --grace >= 0 and --job-prefix not empty")
    return args


async def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname).1s %(asctime)s.%(msecs)03d %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    try:
        api_url, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    except KeyError as e:
        print(f"carme-reconcile: {e.args[0]} is not set (run it as a hub service)", file=sys.stderr)
        return 2
    reconciler = Reconciler(api_url, token, args.policy, args.grace, args.job_prefix)
    log.info("policy %s, grace %g s, job prefix %r, every %g s",
             args.policy, args.grace, args.job_prefix, args.interval)
    if args.once:
        result = await reconciler.run_pass()
        print(json.dumps(result, indent=2))
        return 1 if result.get("error") else 0
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/carme-reconcile/")
    make_app(reconciler, prefix).listen(url.port or 80, url.hostname or "127.0.0.1")
    log.info("serving %sapi/orphans on %s", prefix, url.netloc)
    await reconciler.run_forever(args.interval, args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
