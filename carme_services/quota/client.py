"""The client side of carme-quota's REST API for `carme quota` / `carme project`: requests (standard
library only), LIMIT=VALUE parsing, and the answers as plain aligned tables."""

from __future__ import annotations

import json
import os
import shlex
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from carme_quota.disk import DiskUse, use_words
from carme_quota.limits import LIMIT_FIELDS, LimitError, check_limit

DEFAULT_URL = "http://127.0.0.1:8000"
API = "services/carme-quota/api/"


class ClientError(Exception):
    """A refusal to show the user: str() is the message, `status` the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Api:
    url: str  # the hub's public URL, e.g. http://127.0.0.1:8000
    token: str

    def request(self, method: str, path: str, body: dict | None = None, **query) -> dict:
        """`method` <url>/`path` (relative to the hub's root) with the token; the JSON answer or ClientError
        with the API's message."""
        query = {k: v for k, v in query.items() if v is not None}
        url = f"{self.url.rstrip('/')}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json",
                   **({"Content-Type": "application/json"} if data is not None else {})}
        try:
            request = urllib.request.Request(url, data, headers, method=method)
        except ValueError as e:
            raise ClientError(f"--url {self.url}: {e}", 2) from None
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                answer = r.read()
        except urllib.error.HTTPError as e:
            raise ClientError(f"{method} {path}: HTTP {e.code}: {error_message(e)}") from None
        except OSError as e:  # URLError, or the connection lost or timed out while reading
            raise ClientError(f"cannot reach {self.url}: {getattr(e, 'reason', e)}") from None
        try:
            return json.loads(answer or b"{}")
        except ValueError:
            raise ClientError(f"{method} {path}: the answer is not JSON (is {self.url} the hub?)") from None

    def quota(self, method: str, path: str, body: dict | None = None, **query) -> dict:
        """A request to carme-quota's API (`path` below api/, its parts quoted by the caller)."""
        return self.request(method, API + path, body, **query)

    def me(self) -> str:
        """The name of the token's owner."""
        return self.request("GET", "hub/api/user")["name"]


def error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read()).get("message") or e.reason
    except (ValueError, AttributeError):
        return str(e.reason)


def connect(url: str | None) -> Api:
    """The API at `url` (else $CARME_URL, else the local hub) with $JUPYTERHUB_API_TOKEN."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise ClientError("JUPYTERHUB_API_TOKEN is not set (a token of yours from the hub's Token page)", 2)
    return Api(url or os.environ.get("CARME_URL") or DEFAULT_URL, token)


def part(name: str) -> str:
    """One path segment, quoted."""
    return urllib.parse.quote(name, safe="")


def parse_limit(pair: str) -> tuple[str, int | float | None]:
    """LIMIT=VALUE as (limit, value), VALUE `none` clearing it; ValueError naming the field."""
    name, eq, text = pair.partition("=")
    if not eq:
        raise ValueError(f"{pair}: expected LIMIT=VALUE, e.g. max_servers=1")
    if name not in LIMIT_FIELDS:
        raise ValueError(f"{name}: unknown limit (known: {', '.join(LIMIT_FIELDS)})")
    if text.lower() == "none":
        return name, None
    try:
        value = number(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number (or none)") from None
    try:
        return name, check_limit(name, value)
    except LimitError as e:
        raise ValueError(str(e)) from None


def number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


# ---- the answers as text ---------------------------------------------------------------------------

def shown(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return format(value, ".15g")
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    """Columns aligned on the widest cell, the last one left ragged."""
    cells = [headers] + [[shown(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(map(str.ljust, row, widths)).rstrip() for row in cells)


def use_of(limit: str, usage: dict) -> str:
    if limit == "max_servers":
        return f"{usage['servers']} running or queued"
    if limit == "jobs_per_day":
        return f"{usage['started_today']} today"
    if limit == "gpu_hours":
        return f"{shown(usage['gpu_hours_used'])} used, {shown(usage['gpu_hours_held'])} held by running ones"
    return ""


def report_text(report: dict) -> str:
    """One user's limits by layer and their use (GET api/users/NAME)."""
    limits, usage = report["limits"], report["usage"]
    effective = {k: "no limit" if limits["effective"].get(k) is None else limits["effective"][k] for k in LIMIT_FIELDS}
    rows = [[k, effective[k], limits["role_default"].get(k), limits["override"].get(k), use_of(k, usage)]
            for k in LIMIT_FIELDS]
    lines = [f"{report['user']} (role {report['role']}, account {shown(report['account'])})",
             table(["limit", "effective", "role default", "override", "use"], rows)]
    if usage.get("resets_at"):
        lines.append(f"GPU-hours reset at {usage['resets_at']}")
    lines.append(f"projects: {shown(report['projects'])}")
    for d in report.get("disk", []):
        use = DiskUse.from_dict(d)
        lines.append(f"disk of {'you' if use.kind == 'user' else 'project ' + use.name}: {use_words(use)}"
                     + (f" (limit reached: {', '.join(d['reached'])})" if d.get("reached") else ""))
    lines += [f"running: job {j['job_id']} {j['name']} {j['state']}, GPUs {j['gpus']}, account {j['account']}"
              for j in report.get("running", [])]
    return "\n".join(lines)


def users_text(answer: dict) -> str:
    """Every user (GET api/users), most GPU-hours first."""
    rows = [[r["user"], r["role"], r["usage"]["servers"], r["usage"]["gpu_hours_used"],
             r["limits"]["effective"]["gpu_hours"], r["limits"]["effective"]["max_servers"],
             overrides_text(r["limits"]["override"])] for r in answer["users"]]
    return table(["user", "role", "servers", "GPU-hours used", "GPU-hours limit", "max servers", "override"],
                 rows)


def overrides_text(limits: dict) -> str:
    return " ".join(f"{k}={shown(v)}" for k, v in limits.items() if v is not None)


def override_text(answer: dict) -> str:
    """The answer to PUT/DELETE api/users/NAME/override."""
    return f"override of {answer['user']}: {overrides_text(answer['override']) or 'none'}" + sync_note(answer)


def sync_note(answer: dict) -> str:
    """A change's answer carries the sync that followed it: say so when it failed."""
    error = (answer.get("sync") or {}).get("error")
    return f"\nwarning: the sync after the change failed (the next one retries): {error}" if error else ""


def sync_text(answer: dict) -> str:
    """A sync (POST api/sync): the sacctmgr commands, one per line, then the drift."""
    head = (f"sync{' (dry run)' if answer.get('dry_run') else ''} of cluster {shown(answer.get('cluster'))}: "
            f"{len(answer.get('commands') or [])} sacctmgr command(s), {answer.get('ran', 0)} run, "
            f"{shown(answer.get('associations'))} associations")
    lines = [head, *(shlex.join(c) for c in answer.get("commands") or [])]
    if not answer.get("commands"):
        lines.append("# SLURM already matches Carme's quota: no command")
    if answer.get("drift"):
        lines += ["drift (changed by hand in SLURM):",
                  table(["what", "field", "SLURM", "Carme", "action"],
                        [[d["what"], d["field"], d["slurm"], d["carme"],
                          "overwritten" if d["overwritten"] else "kept"] for d in answer["drift"]])]
    else:
        lines.append("drift: none")
    return "\n".join(lines)


def audit_text(answer: dict) -> str:
    rows = [[e["at"], e["actor"], e["action"], e["target"], e["field"],
             f"{shown(e['old'])} -> {shown(e['new'])}"]
            for e in answer["audit"]]
    return table(["at", "actor", "action", "target", "field", "change"], rows)


def projects_text(answer: dict) -> str:
    rows = [[p["name"], "manager" if p.get("manager") else "member" if p.get("member") else "",
             p["managers"], p.get("members"), template_text(p["template"]), p.get("description")]
            for p in answer["projects"]]
    return table(["project", "you", "managers", "members", "template", "description"], rows)


def template_text(template: dict) -> str:
    return " ".join(f"{k}={shown(v)}" for k, v in template.items() if v not in (None, [], ())) or "-"


def project_text(answer: dict) -> str:
    """The answer to POST api/projects."""
    p = answer["project"]
    return f"project {p['name']} created: {template_text(p['template'])}; managers {shown(p['managers'])}" + \
        sync_note(answer)


def requests_text(answer: dict) -> str:
    rows = [[r["id"], r["user"], r["state"], r["created_at"], r["message"]] for r in answer["requests"]]
    return table(["id", "user", "state", "asked at", "message"], rows)


def request_text(answer: dict) -> str:
    """The answer to POST api/projects/P/requests[/ID]."""
    r = answer["request"]
    where = f", project {r['project']}" if "project" in r else ""
    return f"request {r['id']} ({r['user']}{where}): {r['state']}" + sync_note(answer)
