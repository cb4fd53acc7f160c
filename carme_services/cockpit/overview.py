"""The cockpit's overview (pure): the hub's ONE view of SLURM and the hub's servers, as rows.

    overview(jobs_doc, nodes_doc, users, now, quota_page)  ->  {"nodes", "gpus", "jobs", "other", ...}

- `jobs_doc`, `nodes_doc`: the view's documents (`GET /hub/api/carme/slurm/jobs|nodes`,
  `carme_slurm.view.SlurmView.jobs_document` / `nodes_document`);
- `users`: the hub's user models with their servers (`GET /hub/api/users?state=active`, with
  `state` and `user_options`): which server a Carme job belongs to, and its image.

A node row has its GPUs by type (total, allocated, free, unavailable: idle GPUs of a node that
takes no jobs), its state and SLURM's reason. A job row is one running or pending Carme job
(a name with the view's prefix and a `carme:` comment): user, server, project (account), image,
GPUs and type, node, age, time left, and a pending job's reason in words. Every other job SLURM
lists is counted apart (`other`), by state, with its GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote

from carme_slurm.jobs import SlurmJob, server_slug
from carme_slurm.reasons import describe_reason

from ..sessions.cards import SessionServer, gpu_type, servers_of

#: node states in which a node takes no new jobs, with the word the page shows
DOWN_STATES = frozenset({"down", "fail", "failing", "unknown", "error", "invalid", "future"})
DRAINED_STATES = frozenset({"drained", "draining"})


def node_rows(nodes_doc: Mapping) -> list[dict]:
    """One row per node (the view's order: by name), its GPUs per type."""
    rows = []
    for node in nodes_doc.get("nodes", []):
        state, available = node["state"], bool(node.get("available"))
        reachable = available and state != "allocated"
        gpus = []
        for g in node.get("gpus", []):
            free = g["free"] if reachable else 0
            gpus.append({"type": g["type"] or "gpu", "total": g["total"], "allocated": g["allocated"], "free": free,
                         "unavailable": 0 if reachable else max(g["total"] - g["allocated"], 0)})
        if state in DRAINED_STATES or "DRAIN" in node.get("flags", ()):
            status = "drained" if state != "draining" else "draining"
        elif state in DOWN_STATES or "NOT_RESPONDING" in node.get("flags", ()):
            status = "down"
        elif not available:
            status = "reserved" if {"RESERVED", "MAINTENANCE"} & set(node.get("flags", ())) else "unavailable"
        else:
            status = "up"
        rows.append({
            "name": node["name"], "state": state, "status": status, "flags": list(node.get("flags", ())),
            "reason": node.get("reason") or "", "partitions": list(node.get("partitions", ())),
            "cpus": node.get("cpus", 0), "alloc_cpus": node.get("alloc_cpus", 0),
            "memory_mb": node.get("memory_mb", 0), "alloc_memory_mb": node.get("alloc_memory_mb", 0),
            "gpus": gpus, "gpus_total": sum(g["total"] for g in gpus),
            "gpus_allocated": sum(g["allocated"] for g in gpus), "gpus_free": sum(g["free"] for g in gpus),
            "available": available,
            # drain a node that takes jobs; resume one that is drained or down
            "may_drain": status not in ("drained", "draining"), "may_resume": status in ("drained", "draining", "down"),
        })
    return rows


def gpu_totals(nodes: Iterable[Mapping]) -> dict[str, dict]:
    """{type: {total, allocated, free, unavailable}} over the node rows (the cluster's GPUs)."""
    totals: dict[str, dict] = {}
    for node in nodes:
        for g in node["gpus"]:
            into = totals.setdefault(g["type"], {"total": 0, "allocated": 0, "free": 0, "unavailable": 0})
            for key in into:
                into[key] += g[key]
    return dict(sorted(totals.items()))


def _servers_by_job(users: Iterable[Mapping]) -> tuple[dict[str, SessionServer], dict[tuple[str, str], SessionServer]]:
    """The hub's servers by their job id (state.job_id), and by (user, server slug) for a job the
    hub has not recorded yet (a spawn in progress)."""
    by_id, by_slug = {}, {}
    for user in users:
        for server in servers_of(user):
            if server.job_id:
                by_id[server.job_id] = server
            if server.active:
                by_slug[(server.user, server_slug(server.name))] = server
    return by_id, by_slug


def _node_of(job: SlurmJob) -> str:
    return job.batch_host or (job.nodes if job.nodes and job.nodes != "None assigned" else "")


def job_row(job: SlurmJob, carme_user: str, carme_server: str, server: SessionServer | None, now: float,
            quota_page: str = "") -> dict:
    """One Carme job: who, what, where, how long; `server` is the hub's server of it, if known."""
    options = dict(server.options) if server else {}
    running = job.is_running
    started = job.start_time if running and job.start_time else 0
    time_left = max(0, int(job.end_time - now)) if running and job.end_time and job.time_limit_minutes else None
    user = carme_user or job.user
    return {
        "job_id": job.job_id, "user": user, "slurm_user": job.user,
        "server": server.name if server else carme_server, "hub_server": server is not None,
        "server_ready": bool(server and server.ready),
        "project": job.account, "image": str(options.get("image") or ""),
        "gpus": job.gpus, "gpu_type": gpu_type(job, options),
        "node": _node_of(job) if running or job.state == "COMPLETING" else "",
        "partition": job.partition, "reservation": job.reservation,
        "state": job.state, "running": running, "pending": job.is_pending,
        "submitted": job.submit_time or None, "started": started or None,
        "age_s": int(now - (started or job.submit_time)) if (started or job.submit_time) else None,
        "time_limit_minutes": job.time_limit_minutes, "end_time": job.end_time if running and job.end_time else None,
        "time_left_s": time_left,
        "expected_start": job.start_time if job.is_pending and job.start_time else None,
        "pending_reason": job.reason if job.is_pending else "",
        "pending_words": describe_reason(job.reason) if job.is_pending else "",
        "quota_page": quota_page.format(user=quote(user, safe="")) if quota_page else "",
    }


def overview(jobs_doc: Mapping, nodes_doc: Mapping, users: Iterable[Mapping], now: float,
             quota_page: str = "") -> dict:
    """The overview the page and `GET api/overview` show (see the module docstring)."""
    by_id, by_slug = _servers_by_job(users)
    carme, other = [], {"jobs": 0, "running": 0, "pending": 0, "gpus_running": 0, "gpus_pending": 0, "users": 0}
    other_users = set()
    for raw in jobs_doc.get("jobs", []):
        job = SlurmJob.from_dict(raw)
        if not job.is_active:
            continue
        if raw.get("carme"):
            cuser, cserver = raw.get("carme_user") or job.user, raw.get("carme_server") or ""
            server = by_id.get(job.job_id) or by_slug.get((cuser, cserver))
            carme.append(job_row(job, cuser, cserver, server, now, quota_page))
            continue
        other["jobs"] += 1
        other_users.add(job.user)
        if job.is_running:
            other["running"] += 1
            other["gpus_running"] += job.gpus
        elif job.is_pending:
            other["pending"] += 1
            other["gpus_pending"] += job.gpus
    other["users"] = len(other_users)
    carme.sort(key=lambda r: (not r["running"], r["user"], r["server"], r["job_id"]))
    nodes = node_rows(nodes_doc)
    running = [r for r in carme if r["running"]]
    return {
        "at": now,
        "nodes": nodes,
        "gpus": gpu_totals(nodes),
        "jobs": carme,
        "other": other,
        "counts": {"running": len(running), "pending": sum(1 for r in carme if r["pending"]),
                   "gpus_running": sum(r["gpus"] for r in running)},
        "snapshot": {"jobs": jobs_doc.get("snapshot", {}), "nodes": nodes_doc.get("snapshot", {})},
        "job_name_prefix": jobs_doc.get("job_name_prefix", ""),
    }
