"""The carme-culler service: idle GPU servers are warned, then stopped.

Each pass (every `interval`): the hub's ready servers with their state (the SLURM job id) and
`last_activity`, the hub's ONE view of SLURM (jobs, with their GPUs' indexes per node), then one
`nvidia-smi` query per node that runs a Carme GPU job, through `node_command` as root (a site:
`ssh -o BatchMode=yes {node}`): a job cannot fake what its node's driver reports. The decisions are
pure (`idle`); the only actions are the hub's own stop of a server (`DELETE
/hub/api/users/U/servers/S`) and the warnings users read here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from prometheus_client import Counter, Gauge
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, validate

from carme_core.files import write_atomically
from carme_core.roles import role_of_model
from carme_slurm import SlurmCommandError, command_env, run_command
from carme_slurm.gres import gpu_indexes

from ..base import CarmeService, PeriodicTask
from ..reconcile import hub_time, jobs_from_view, servers_from_users
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from .idle import (
    NVIDIA_SMI_QUERY,
    CullerPolicy,
    IdleTally,
    Server,
    Verdict,
    Watch,
    account_sample,
    apply_verdict,
    job_samples,
    judge,
    parse_gpu_query,
)

NAME = "carme-culler"
READ_SCOPE = "custom:carme-culler:read"  # a user's own servers' idle state, keep running
ADMIN_SCOPE = "custom:carme-culler:admin"  # everyone's, the pass, the samples


class CullerService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "Stop servers whose GPUs and JupyterLab stay idle, after a warning the user can answer."

    interval = Float(60.0, config=True, help="Seconds between passes (a GPU sample of every node per pass).")
    delay = Float(5.0, config=True, help="Seconds before the first pass.")
    idle_minutes = Float(60.0, config=True, help="A server is idle after this many minutes with its GPUs below "
                         "gpu_threshold and no JupyterLab activity (CPU-only servers: activity alone).")
    warn_minutes = Float(15.0, config=True, help="An idle server is warned, and stopped this many minutes later "
                         "if it is still idle.")
    gpu_threshold = Float(5.0, config=True, help="GPU utilisation (percent) at or above which a GPU is busy.")
    exempt_roles = List(Unicode(), [], config=True, help="Carme roles never culled, e.g. [admin].")
    exempt_users = List(Unicode(), [], config=True, help="Hub users never culled.")
    exempt_groups = List(Unicode(), [], config=True, help="Hub groups whose members are never culled.")
    exempt_projects = List(Unicode(), [], config=True, help="Quota projects (SLURM accounts) whose servers are "
                           "never culled.")
    keep_running_max = Integer(3, config=True, help="How often a user may press Keep running for one server.")
    keep_running_minutes = Float(60.0, config=True, help="Minutes between two Keep running presses of a server.")
    node_command = List(Unicode(), ["ssh", "-o", "BatchMode=yes", "{node}"], config=True,
                        help="How the culler runs nvidia-smi on a node, as argv ({node}: the SLURM node name), "
                        "as root or an account that cannot be a job's; the query is appended. The dev cluster: "
                        "[env, CARME_STANDIN_NODE={node}] (its nodes share this host).")
    sample_timeout = Float(20.0, config=True, help="Seconds a node's nvidia-smi may take.")
    dry_run = Bool(False, config=True, help="Judge and warn, never stop: the pass lists what it would stop.")
    history_size = Integer(1000, config=True, help="Culls kept in memory for api/culls.")
    tally_file = Unicode("", config=True, help="Where the culler keeps its hourly tally of idle and busy "
                         "GPU-hours (api/idle, the cockpit's chart) across restarts; empty: in memory only. The "
                         "hub's wiring: <carme.state_dir>/carme-culler-idle.json.")
    tally_hours = Integer(168, config=True, help="Hours of the idle GPU-hours tally kept (api/idle).")
    once = Bool(False, config=True, help="One pass, print it as JSON, exit.")

    aliases = {**CarmeService.aliases, "interval": "CullerService.interval"}
    flags = {"once": ({"CullerService": {"once": True}}, "one pass, print it as JSON, exit"),
             "dry-run": ({"CullerService": {"dry_run": True}}, "judge and warn, never stop")}

    @validate("interval", "idle_minutes", "warn_minutes", "keep_running_minutes", "sample_timeout", "tally_hours")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"CullerService.{proposal.trait.name} must be > 0, not {proposal.value}")
        return proposal.value

    @validate("gpu_threshold")
    def _check_threshold(self, proposal):
        if not 0 < proposal.value <= 100:
            raise TraitError(f"CullerService.gpu_threshold must be a percentage above 0, not {proposal.value}")
        return proposal.value

    @validate("node_command")
    def _check_node_command(self, proposal):
        if not proposal.value or not any("{node}" in a for a in proposal.value):
            raise TraitError("CullerService.node_command must name the node: an argument with {node}")
        return proposal.value

    def initialize(self, argv=None):
        super().initialize(argv)
        self.watches: dict[tuple[str, str, str], Watch] = {}  # (user, server, job id)
        self.last: dict = {"at": None, "servers": [], "stopped": [], "would_stop": [], "error": None,
                           "dry_run": self.dry_run}
        self.culls: deque = deque(maxlen=self.history_size)
        self.tally = self.load_tally()

    @property
    def policy(self) -> CullerPolicy:
        return CullerPolicy(self.idle_minutes * 60, self.warn_minutes * 60, self.gpu_threshold,
                            tuple(self.exempt_roles), tuple(self.exempt_users), tuple(self.exempt_groups),
                            tuple(self.exempt_projects), self.keep_running_max, self.keep_running_minutes * 60)

    @cached_property
    def counters(self) -> dict:
        registry = self.metrics.registry
        return {"culls": Counter("carme_culler_culls", "Servers stopped as idle", registry=registry),
                "warnings": Counter("carme_culler_warnings", "Idle warnings given", registry=registry),
                "saved": Counter("carme_culler_idle_gpu_hours_saved", "GPU-hours culled servers would have held "
                                 "until their time limit", registry=registry),
                "idle_gpu_hours": Counter("carme_culler_idle_gpu_hours", "GPU-hours servers held with their GPUs "
                                          "below gpu_threshold, as sampled", registry=registry),
                "sampled_gpu_hours": Counter("carme_culler_sampled_gpu_hours", "GPU-hours of servers the culler "
                                             "sampled (idle and busy)", registry=registry),
                "failures": Counter("carme_culler_sample_failures", "Nodes whose nvidia-smi did not answer",
                                    registry=registry),
                "servers": Gauge("carme_culler_servers", "Servers by the last pass's verdict", ["state"],
                                 registry=registry)}

    def web_handlers(self):
        from .handlers import handlers

        return handlers()

    def periodic_tasks(self):
        return [PeriodicTask("pass", self.interval, self.run_pass, self.delay)]

    # ---- one pass --------------------------------------------------------------------------------

    async def servers(self) -> list[Server]:
        """Ready hub servers joined with their running SLURM jobs (a server without one is not judged)."""
        users = await self.hub_client().get_all("users", state="active")
        jobs, _snapshot, _prefix = jobs_from_view(await self.hub_client().slurm("jobs"))
        running = {j.job_id: j for j in jobs if j.is_running}
        models = {u["name"]: u for u in users}
        out = []
        for s in servers_from_users(users):
            job = running.get(s.job_id)
            if not s.ready or job is None:
                continue
            model = models[s.user]
            activity = hub_time(model["servers"][s.name].get("last_activity"))
            node = job.batch_host or job.nodes
            try:
                indexes = gpu_indexes(job.gres_detail[0]) if job.gres_detail else ()
            except ValueError:
                indexes = ()
            out.append(Server(s.user, s.name, s.job_id, s.started, activity,
                              role_of_model(model, self.power_groups), tuple(model.get("groups") or ()),
                              job.gpus, job.account, node, indexes,
                              max(0.0, job.end_time - time.time()) if job.end_time else None))
        return out

    async def sample_node(self, node: str) -> dict:
        argv = [a.replace("{node}", node) for a in self.node_command] + NVIDIA_SMI_QUERY
        try:
            return parse_gpu_query(await run_command(argv, env=command_env(), timeout=self.sample_timeout))
        except (SlurmCommandError, ValueError) as e:
            self.counters["failures"].inc()
            self.log.warning("GPU sample of node %s failed: %s", node, e)
            return {}

    async def run_pass(self) -> dict:
        now = time.time()
        try:
            servers = await self.servers()
        except Exception as e:  # doubt is not evidence: without the hub and the view nothing is judged
            self.log.warning("pass skipped: %s", e)
            self.last = {**self.last, "error": f"{type(e).__name__}: {e}", "error_at": now}
            return self.last
        nodes = sorted({s.node for s in servers if s.gpus and s.node})
        samples = dict(zip(nodes, await asyncio.gather(*(self.sample_node(n) for n in nodes)), strict=True))
        live = {(s.user, s.name, s.job_id) for s in servers}
        self.watches = {k: w for k, w in self.watches.items() if k in live}  # ended servers are forgotten
        report, stopped, would_stop = [], [], []
        policy = self.policy
        for server in servers:
            watch = self.watches.setdefault((server.user, server.name, server.job_id), Watch())
            if server.gpus:
                got = job_samples(samples.get(server.node, {}), server.gpu_indexes)
                if got is not None:
                    idle_s, busy_s = account_sample(watch, self.tally, now, got[0], server.gpus, policy.gpu_threshold,
                                                    2 * self.interval + self.sample_timeout)
                    self.counters["idle_gpu_hours"].inc(idle_s / 3600)
                    self.counters["sampled_gpu_hours"].inc((idle_s + busy_s) / 3600)
                    watch.add_sample(now, *got)
            verdict = judge(server, watch, policy, now)
            if apply_verdict(watch, verdict):
                self.counters["warnings"].inc()
                self.log.info("warned %s/%s (job %s): %s; stop at %s", server.user, server.name, server.job_id,
                              verdict.reason, time.strftime("%H:%M:%S", time.localtime(verdict.stop_at)))
            if verdict.state == "stop":
                (would_stop if self.dry_run else stopped).append(await self.stop(server, verdict))
            report.append(server_report(server, watch, verdict, policy))
        for state in ("exempt", "unknown", "busy", "idle-warned", "stop"):
            self.counters["servers"].labels(state).set(sum(r["state"] == state for r in report))
        self.last = {"at": now, "dry_run": self.dry_run, "servers": report, "stopped": stopped,
                     "would_stop": would_stop, "nodes_sampled": nodes, "error": None}
        self.save_tally()
        return self.last

    # ---- the idle GPU-hours tally (a file of its own: nothing else keeps it) -----------------------

    def load_tally(self) -> IdleTally:
        if not self.tally_file:
            return IdleTally(keep_hours=self.tally_hours)
        try:
            data = json.loads(Path(self.tally_file).read_text())
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as e:
            self.log.warning("the idle tally %s is unreadable (%s): starting a new one", self.tally_file, e)
            data = None
        return IdleTally.from_json(data, self.tally_hours)

    def save_tally(self) -> None:
        if not self.tally_file:
            return
        path = Path(self.tally_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(self.tally.to_json()), 0o600)
        except OSError as e:  # the tally is a chart, not a decision: the pass goes on
            self.log.warning("the idle tally could not be written to %s: %s", path, e)

    async def stop(self, server: Server, verdict: Verdict) -> dict:
        saved = server.gpus * (server.time_left or 0) / 3600
        entry = {"user": server.user, "server": server.name, "job_id": server.job_id, "at": time.time(),
                 "reason": verdict.reason, "gpus": server.gpus, "idle_gpu_hours_saved": round(saved, 3),
                 "dry_run": self.dry_run}
        if self.dry_run:
            self.log.info("dry run: would stop %s/%s (job %s): %s", server.user, server.name, server.job_id,
                          verdict.reason)
            return entry
        path = f"users/{quote(server.user, safe='')}/servers/{quote(server.name, safe='')}"
        try:
            await self.hub_client().delete(path)
        except Exception as e:  # noqa: BLE001 - reported; the next pass tries again
            self.log.warning("stopping %s/%s failed: %s", server.user, server.name, e)
            return {**entry, "error": str(e)}
        self.counters["culls"].inc()
        self.counters["saved"].inc(saved)
        self.culls.append(entry)
        self.log.warning("stopped %s/%s (job %s): %s", server.user, server.name, server.job_id, verdict.reason)
        return entry

    def start(self):
        if self.once:
            result = asyncio.run(self.run_pass())
            print(json.dumps(result, indent=2, default=str))
            raise SystemExit(1 if result.get("error") else 0)
        self.log.info("idle after %g min, warned %g min before the stop, GPUs below %g %%, every %g s%s",
                      self.idle_minutes, self.warn_minutes, self.gpu_threshold, self.interval,
                      " (dry run: nothing is stopped)" if self.dry_run else "")
        super().start()


def server_report(server: Server, watch: Watch, verdict: Verdict, policy: CullerPolicy) -> dict:
    last = watch.samples[-1] if watch.samples else None
    return {**{k: v for k, v in asdict(server).items() if k != "gpu_indexes"}, "gpu_indexes": list(server.gpu_indexes),
            "state": verdict.state, "reason": verdict.reason, "idle_since": verdict.idle_since,
            "stop_at": verdict.stop_at, "keep_running_left": max(0, policy.keep_running_max - len(watch.kept)),
            "last_sample": {"at": last[0], "utilization": last[1], "memory_mib": last[2]} if last else None,
            "idle_gpu_hours": round(watch.idle_gpu_s / 3600, 4), "busy_gpu_hours": round(watch.busy_gpu_s / 3600, 4)}


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(CullerService, settings)
    values.setdefault("tally_file", f"{settings.state_dir}/carme-culler-idle.json")
    return {
        "service": service_spec(CullerService, settings, values, url=values.get("url", "http://127.0.0.1:10107"),
                                allowed_scopes=[READ_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            READ_SCOPE: {"description": "Read a user's servers' idle state and keep them running."},
            ADMIN_SCOPE: {"description": "Read every server's idle state and GPU samples, the culls and the idle "
                                         "GPU-hours (the cockpit's token holds it for its charts)."},
        },
        "roles": [
            own_role(NAME, ["list:users", "read:users", "read:users:activity", "read:servers", "admin:server_state",
                            "delete:servers"],
                     "carme-culler reads every server (its state, activity) and the SLURM view, and stops idle ones."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE, READ_SCOPE],
                        "The hub's admins see every server's idle state and the culls."),
        ],
        "user_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
        # the session's own token: its JupyterLab (carme_lab) shows the idle warning and Keep running
        "server_scopes": [f"{READ_SCOPE}!user", f"access:services!service={NAME}"],
    }


if __name__ == "__main__":
    CullerService.launch_instance()
