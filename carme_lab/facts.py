"""The session's facts for its JupyterLab (pure): the hub services' answers joined for one server.

    session_facts(server, sessions, culler, now) -> {
        "server", "job_id", "status", "image", "gpus", "gpu_type", "node", "time_left_s",
        "time_limit_minutes", "poll_seconds",
        "warnings": [{"kind": "walltime" | "idle", "key", "message", "actions": [{"label", "command", "minutes"?}]}],
        "problems": ["carme-culler: ..."]}

`sessions` is carme-sessions' `GET api/sessions` (the caller's cards), `culler` carme-culler's
`GET api/servers`; either is None when that service did not answer (its words are in `problems`).
A warning's `key` is new for each warning (threshold and end time; the culler's stop time), so the
page notifies once per key.
"""

from __future__ import annotations

from collections.abc import Mapping

SESSIONS = "carme-sessions"  # carme_services.sessions NAME
CULLER = "carme-culler"  # carme_services.culler NAME
DEFAULT_POLL_SECONDS = 30.0


def minutes_words(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if minutes < 10 and rest else f"{minutes} min"


def walltime_warning(card: Mapping, choices: list) -> dict | None:
    warning = (card.get("running") or {}).get("warning")
    if not warning:
        return None
    allowed = (card.get("actions") or {}).get("extend")
    actions = [{"label": f"Extend +{m} min", "command": "extend", "minutes": m} for m in choices] if allowed else []
    return {"kind": "walltime", "key": str(warning.get("key")), "message": str(warning.get("message")),
            "actions": actions}


def idle_warning(row: Mapping, now: float) -> dict | None:
    if row.get("state") != "idle-warned" or not row.get("stop_at"):
        return None
    stop_at = float(row["stop_at"])
    # short: JupyterLab's toasts show 140 characters (the reason is on the culler's page)
    message = f"This server is idle: the idle culler stops it in {minutes_words(stop_at - now)} unless it is used."
    actions = []
    left = int(row.get("keep_running_left") or 0)
    if left > 0:
        message += f" Keep running resets the clock ({left} {'press' if left == 1 else 'presses'} left)."
        actions = [{"label": "Keep running", "command": "keep-running"}]
    return {"kind": "idle", "key": f"{row.get('job_id')}:idle:{int(stop_at)}", "message": message, "actions": actions}


def session_facts(server: str, sessions: Mapping | None, culler: Mapping | None, now: float,
                  problems: list[str] | None = None) -> dict:
    facts = {"server": server, "job_id": "", "status": "", "image": "", "gpus": 0, "gpu_type": "", "node": "",
             "time_left_s": None, "time_limit_minutes": None,
             "poll_seconds": float((sessions or {}).get("poll_seconds") or DEFAULT_POLL_SECONDS),
             "extend_choices": list((sessions or {}).get("extend_choices") or []),
             "warnings": [], "problems": list(problems or [])}
    card = next((c for c in (sessions or {}).get("sessions", []) if c.get("server") == server), None)
    if card is not None:
        for key in ("job_id", "status", "image", "gpus", "gpu_type", "node", "time_limit_minutes"):
            facts[key] = card.get(key) if card.get(key) is not None else facts[key]
        facts["time_left_s"] = (card.get("running") or {}).get("time_left_s")
        warning = walltime_warning(card, facts["extend_choices"])
        if warning:
            facts["warnings"].append(warning)
    for row in (culler or {}).get("servers", []):
        if row.get("name") == server:
            warning = idle_warning(row, now)
            if warning:
                facts["warnings"].append(warning)
    return facts
