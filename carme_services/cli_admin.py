"""The admins' commands of `carme`: the cluster, its jobs and history, nodes, announcements.

    carme status [--json]                      nodes with their GPUs, and the jobs: the hub's view of SLURM
    carme jobs [--json]                        the running and pending Carme jobs (carme-cockpit's overview)
    carme history [--since 7d] [--until T] [--user U] [--project P] [--image I] [--state S] [--csv | --json]
                                               finished jobs from SLURM's accounting (carme-cockpit)
    carme drain NODE --reason "..."            drain a node (carme-cockpit: scontrol update, audited)
    carme resume NODE                          resume a drained or down node
    carme announce "TEXT" [--severity info|warning|danger] [--start T] --expires 2h|T
    carme announce --list [--past] | --current | --delete ID | --audit
                                               carme-announcements' notices

APIs: the hub's `GET /hub/api/carme/slurm/{nodes,jobs}`, carme-cockpit's `api/overview`,
`api/history`, `api/nodes/NODE/{drain,resume}`, carme-announcements' `api/announcements`.
Times: ISO 8601 (without a zone: this machine's local time) or a duration from now (30m, 2h, 7d);
`--expires` as a duration counts from the start. Tables by default; `--json` prints the API's
answer as is. Exit status 1 when an API refuses (its message is printed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from . import cli_api
from .cli_api import ClientError, ago, table, when

COMMANDS = ("status", "jobs", "history", "drain", "resume", "announce")
COCKPIT = "services/carme-cockpit/api/"
ANNOUNCEMENTS = "services/carme-announcements/api/"


def main(args: list[str]) -> int:
    a = parser().parse_args(args)
    try:
        return a.run(cli_api.connect(a.url), a) or 0
    except ClientError as e:
        print(f"carme: {e}", file=sys.stderr)
        return e.status


def emit(answer, a, text) -> None:
    print(json.dumps(answer, indent=2) if a.json else text(answer))


# ---- carme status: the hub's view of SLURM ---------------------------------------------------------

def status(hub, a):
    with cli_api.progress("reading the hub's view of SLURM"):
        answer = {"nodes": hub.json("GET", "hub/api/carme/slurm/nodes"), "jobs": hub.json("GET", "hub/api/carme/slurm/jobs")}
    emit(answer, a, status_text)


def gpus_text(gpus: list[dict]) -> str:
    return ", ".join(f"{g['type'] or 'gpu'} {g['allocated']}/{g['total']}" for g in gpus) or "-"


def snapshot_text(name: str, snapshot: dict) -> str:
    fresh = "SLURM answering" if snapshot.get("slurm_answering") else f"SLURM NOT answering: {snapshot.get('last_error')}"
    return f"{name}: snapshot of {when(snapshot.get('last_snapshot'))}, {fresh}"


def status_text(answer: dict) -> str:
    nodes, jobs = answer["nodes"], answer["jobs"]
    rows = [[n["name"], n["state"], gpus_text(n.get("gpus", [])), n.get("gpus_free", 0), n.get("reason") or ""]
            for n in nodes.get("nodes", [])]
    lines = [snapshot_text("nodes", nodes.get("snapshot", {})),
             table(["node", "state", "GPUs in use/total", "free", "reason"], rows), ""]
    gpu_rows = [[t, c["total"], c["allocated"], c["free"], c.get("unavailable", 0)]
                for t, c in sorted(nodes.get("gpus", {}).items())]
    lines += [table(["GPU type", "total", "allocated", "free", "unavailable"], gpu_rows), ""]
    active = [j for j in jobs.get("jobs", []) if j.get("active")]
    counts = {}
    for j in active:
        key = ("Carme" if j.get("carme") else "other", j["state"].lower())
        counts[key] = counts.get(key, [0, 0])
        counts[key][0] += 1
        counts[key][1] += j.get("gpus") or 0
    lines.append(snapshot_text("jobs", jobs.get("snapshot", {})))
    lines.append(table(["jobs", "state", "count", "GPUs"], [[k[0], k[1], n, g] for k, (n, g) in sorted(counts.items())])
                 if counts else "no running or pending jobs")
    return "\n".join(lines)


# ---- carme jobs, history, drain, resume: carme-cockpit ------------------------------------------

def jobs(hub, a):
    with cli_api.progress("reading carme-cockpit's overview"):
        answer = hub.json("GET", COCKPIT + "overview")
    emit(answer, a, jobs_text)


def jobs_text(answer: dict) -> str:
    rows = [[j["job_id"], j["user"], j.get("server") or "(default)", j.get("project"), j.get("image"),
             f"{j.get('gpus', 0)}" + (f" {j['gpu_type']}" if j.get("gpu_type") else ""), j.get("node"),
             j["state"].lower(), ago(j.get("age_s")), ago(j.get("time_left_s")),
             j.get("pending_words") or j.get("pending_reason") or ""] for j in answer.get("jobs", [])]
    lines = [table(["job", "user", "server", "project", "image", "GPUs", "node", "state", "age", "left", "why pending"],
                   rows) if rows else "no running or pending Carme jobs"]
    other = answer.get("other") or {}
    if other.get("jobs"):
        lines.append(f"other jobs: {other['jobs']} ({other.get('running', 0)} running with {other.get('gpus_running', 0)} "
                     f"GPUs, {other.get('pending', 0)} pending) of {other.get('users', 0)} users")
    return "\n".join(lines)


HISTORY_COLUMNS = ("job_id", "user", "project", "image", "gpus", "partition", "reservation", "state",
                   "start", "end", "wait_s", "end_reason", "gpu_hours")  # of carme-cockpit's api/history


def history(hub, a):
    if a.csv and a.json:
        raise ClientError("carme history: --csv or --json, not both", 2)
    query = {"start": a.since, "end": a.until, "user": a.user, "project": a.project, "image": a.image,
             "state": a.state}
    with cli_api.progress(f"reading the job history since {a.since} (sacct, through carme-cockpit)"):
        if a.csv:
            text = hub.text(COCKPIT + "history", "text/csv", format="csv", **query)
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
            return
        answer = hub.json("GET", COCKPIT + "history", format="json", **query)
    emit(answer, a, history_text)


def history_text(answer) -> str:
    rows = answer.get("rows", []) if isinstance(answer, dict) else answer
    if not rows:
        return "no jobs in that window"
    columns = [c for c in HISTORY_COLUMNS if c in rows[0]] or list(rows[0])
    cells = [[when(r[c]) if c in ("start", "end") and isinstance(r[c], (int, float)) else
              ago(r[c]) if c == "wait_s" and isinstance(r[c], (int, float)) else r[c] for c in columns] for r in rows]
    return table([c.replace("_", " ") for c in columns], cells)


def node_action(action: str):
    def run(hub, a):
        body = {"reason": a.reason} if action == "drain" else {}
        answer = hub.json("POST", COCKPIT + f"nodes/{quote(a.node, safe='')}/{action}", body)
        emit(answer, a, lambda answer: answer.get("message") or f"{a.node}: {action} done"
             + (f" (reason: {a.reason})" if action == "drain" else ""))
    return run


# ---- carme announce: carme-announcements --------------------------------------------------------

def time_value(text: str, field: str, now: datetime) -> str:
    """An ISO 8601 time with its zone, from ISO 8601 (no zone: local time) or a duration from `now`."""
    from .announcements.notices import NoticeError, is_duration, parse_duration

    try:
        if is_duration(text):
            return (now + timedelta(seconds=parse_duration(text, field))).replace(microsecond=0).isoformat()
        value = text.strip()
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "zZ" else value)
    except NoticeError as e:
        raise ClientError(f"--{field}: {e.message}", 2) from None
    except ValueError:
        raise ClientError(f"--{field}: {text!r} is neither a time (2026-12-04T08:00) nor a duration (2h)", 2) from None
    return (parsed if parsed.tzinfo else parsed.astimezone()).isoformat()


def announce_body(a, now: datetime) -> dict:
    """The POST body: `--expires` as a duration is the notice's duration (counted from its start, by the service)."""
    from .announcements.notices import is_duration, parse_duration

    if not a.expires:
        raise ClientError("--expires is required to post (a duration such as 2h, or a time)", 2)
    body = {"text": a.text, "severity": a.severity}
    if a.start:
        body["start"] = time_value(a.start, "start", now)
    if is_duration(a.expires):
        body["duration"] = parse_duration(a.expires, "expires")
    else:
        body["expiry"] = time_value(a.expires, "expires", now)
    return body


def announce(hub, a):
    chosen = [x for x in (a.list, a.current, a.audit, a.delete is not None) if x]
    if len(chosen) > 1 or (chosen and a.text):
        raise ClientError("carme announce: give TEXT to post, or one of --list, --current, --delete ID, --audit", 2)
    if a.delete is not None:
        answer = hub.json("DELETE", ANNOUNCEMENTS + f"announcements/{a.delete}")
        return emit(answer, a, lambda n: f"announcement {n['id']} deleted")
    if a.list or a.current:
        answer = hub.json("GET", ANNOUNCEMENTS + "announcements" + ("/current" if a.current else ""),
                          past=1 if a.past else None)
        return emit(answer, a, announcements_text)
    if a.audit:
        return emit(hub.json("GET", ANNOUNCEMENTS + "audit"), a, audit_text)
    if not a.text:
        raise ClientError("carme announce: give TEXT to post, or one of --list, --current, --delete ID, --audit", 2)
    answer = hub.json("POST", ANNOUNCEMENTS + "announcements", announce_body(a, datetime.now(timezone.utc)))
    emit(answer, a, lambda n: f"announcement {n['id']} posted ({n['severity']}): shown from {when(n['start'])} "
                              f"until {when(n['expiry'])}")


def announcements_text(answer: dict) -> str:
    rows = [[n["id"], n["severity"], n.get("state", "current"), when(n["start"]), when(n["expiry"]),
             n.get("created_by", ""), n["text"].replace("\n", " ")] for n in answer.get("announcements", [])]
    return table(["id", "severity", "state", "start", "expiry", "by", "text"], rows) if rows else "no announcements"


def audit_text(answer: dict) -> str:
    rows = [[when(e["at"]), e["actor"], e["action"], e["announcement_id"], e["notice"].get("severity"),
             e["notice"].get("text", "").replace("\n", " ")] for e in answer.get("audit", [])]
    return table(["at", "who", "what", "id", "severity", "text"], rows) if rows else "no changes yet"


# ---- the parser -----------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the hub's URL (default: $JUPYTERHUB_URL, else $CARME_URL, else "
                                      f"{cli_api.DEFAULT_URL})")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer as is")
    top = argparse.ArgumentParser(prog="carme", description="Carme's admin commands (the hub's APIs)")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(run=run)
        return p

    command("status", status, "nodes with their GPUs, and the jobs (the hub's view of SLURM)")
    command("jobs", jobs, "the running and pending Carme jobs (carme-cockpit)")
    p = command("history", history, "finished jobs from SLURM's accounting (carme-cockpit)")
    p.add_argument("--since", default="7d", help="the window's start: a duration back (7d) or a date (default 7d)")
    p.add_argument("--until", help="the window's end (default now)")
    for name in ("user", "project", "image", "state"):
        p.add_argument(f"--{name}", help=f"only jobs of this {name}")
    p.add_argument("--csv", action="store_true", help="CSV, as the cockpit exports it")
    p = command("drain", node_action("drain"), "drain NODE: running jobs go on, nothing new starts (carme-cockpit)")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", required=True, help="why (SLURM keeps it with the node: sinfo -R)")
    command("resume", node_action("resume"), "resume a drained or down NODE (carme-cockpit)").add_argument(
        "node", metavar="NODE")
    p = command("announce", announce, "post, list or delete announcements (carme-announcements)")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the notice (plain text)")
    p.add_argument("--severity", choices=("info", "warning", "danger"), default="info")
    p.add_argument("--start", help="when it begins to show: a time or a duration from now (default now)")
    p.add_argument("--expires", help="when it stops: a duration after the start (2h) or a time")
    p.add_argument("--list", action="store_true", help="the scheduled and current notices (admins)")
    p.add_argument("--past", action="store_true", help="with --list: also expired and deleted ones")
    p.add_argument("--current", action="store_true", help="the notices shown now (everyone)")
    p.add_argument("--delete", type=int, metavar="ID", help="delete notice ID (admins)")
    p.add_argument("--audit", action="store_true", help="who changed what, when (admins)")
    return top
