"""The cockpit's overview page with 50 jobs in the view: server-side time, p50/p99 (issue 23, acceptance 7).

    /opt/carme/venv/bin/python benchmarks/cockpit_overview.py [--jobs 50] [--runs 200]

What one page view costs in carme-cockpit once the hub's documents are in hand (the service reads
them over HTTP from the hub's one SLURM view; that read is cached for `cache_seconds` and makes no
SLURM call, tests/integration/test_cockpit.py counts them): `overview()` (rows of nodes and jobs,
joined with the hub's servers), the free-GPU forecast and its chart, and the page's Jinja render
with the hub's page.html, as `OverviewPage` does. Baseline measured in the same run: the same page
with no job in the view (the fixed cost: template, nodes, chart). Prints p50/p99 of each, the ratio,
and whether the p99 with N jobs is under the goal (300 ms). No cluster needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from carme_services.base import hub_template_dir  # noqa: E402
from carme_services.cockpit.charts import forecast_chart  # noqa: E402
from carme_services.cockpit.forecast import forecast  # noqa: E402
from carme_services.cockpit.overview import overview  # noqa: E402

GOAL_MS = 300.0
NOW = time.time()
NODES = {"snapshot": {}, "nodes": [
    {"name": f"carme-n{i}", "address": "127.0.0.1", "state": "mixed", "flags": [], "partitions": ["interactive", "batch"],
     "cpus": 64, "alloc_cpus": 32, "memory_mb": 512_000, "alloc_memory_mb": 100_000, "reason": "",
     "gpus": [{"type": "a100", "total": 8, "allocated": 4, "free": 4}], "available": True, "tmp_disk_mb": 0}
    for i in range(1, 9)]}


def documents(n: int) -> tuple[dict, list[dict]]:
    jobs, users = [], []
    for i in range(n):
        user, running = f"user{i:03d}", i % 5 != 0
        job = {"job_id": str(1000 + i), "name": f"carme-{user}", "user": user, "account": "carme-dev",
               "state": "RUNNING" if running else "PENDING", "reason": "None" if running else "Resources",
               "partition": "interactive", "nodes": f"carme-n{i % 8 + 1}" if running else "",
               "batch_host": f"carme-n{i % 8 + 1}" if running else "", "comment": f"carme:{user}/",
               "submit_time": NOW - 3600, "start_time": NOW - 1800 if running else NOW + 600,
               "end_time": NOW + 1800 + 60 * i if running else 0, "time_limit_minutes": 60 + i,
               "gpus": 1 + i % 2, "gres_detail": [f"gpu:a100:{1 + i % 2}(IDX:0)"] if running else [],
               "reservation": "", "exit_status": None, "exit_signal": None, "output_path": "",
               "carme": True, "carme_user": user, "carme_server": ""}
        jobs.append(job)
        users.append({"name": user, "servers": {"": {"name": "", "ready": running, "pending": None if running else "spawn",
                                                     "state": {"job_id": job["job_id"]},
                                                     "user_options": {"image": "pytorch-gpu", "gpus": job["gpus"]}}}})
    if n:  # and other people's jobs, counted apart
        jobs += [{**jobs[0], "job_id": str(5000 + k), "name": "train", "comment": "", "carme": False,
                  "carme_user": None} for k in range(10)]
    return {"snapshot": {}, "job_name_prefix": "carme-", "jobs": jobs}, users


def page(env: jinja2.Environment, jobs_doc: dict, users: list[dict]) -> str:
    data = overview(jobs_doc, NODES, users, time.time(), "/services/carme-quota/admin#override-{user}")
    data["forecast"] = forecast(NODES["nodes"], jobs_doc["jobs"], [], time.time()).to_dict()
    prefix = "/hub/"
    return env.get_template("cockpit.html").render(
        base_url=prefix, prefix="/", static_url=lambda path, include_version=True: f"/hub/static/{path}",
        logo_url=prefix, login_url="/hub/login", logout_url="/hub/logout",
        user={"name": "carol", "json_escaped_name": "carol"}, no_spawner_check=True, parsed_scopes=set(), services=[],
        xsrf_token="x", version_hash="", announcement="", service_prefix="/services/carme-cockpit/", role="admin",
        data=data, may_act=True, notice="", notice_kind="success", actions=[], forecast_svg=forecast_chart(data["forecast"]))


def timed(env, docs, runs: int) -> list[float]:
    page(env, *docs)  # warm: templates compiled
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        html = page(env, *docs)
        out.append((time.perf_counter() - began) * 1000)
    assert "cockpit-forecast" in html
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    templates = REPO / "carme_services" / "cockpit" / "templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(templates), str(hub_template_dir())]), autoescape=True)
    empty = timed(env, documents(0), args.runs)
    full = timed(env, documents(args.jobs), args.runs)
    shown = page(env, *documents(args.jobs)).count('data-job="')
    assert shown == args.jobs, f"the page shows {shown} jobs, not {args.jobs}"
    rows = {"no jobs (baseline)": empty, f"{args.jobs} Carme jobs + 10 others": full}
    print(f"cockpit overview page, server-side, {args.runs} renders each (ms)")
    for name, values in rows.items():
        print(f"  {name:28} p50 {statistics.median(values):7.2f}   p99 {pct(values, 0.99):7.2f}")
    ratio = statistics.median(full) / statistics.median(empty)
    verdict = "under" if pct(full, 0.99) < GOAL_MS else "OVER"
    print(f"  ratio p50 {args.jobs} jobs / baseline: {ratio:.2f}x; p99 {pct(full, 0.99):.1f} ms is {verdict} the "
          f"{GOAL_MS:.0f} ms goal")
    out = REPO / "benchmarks" / "results" / f"cockpit_overview-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"jobs": args.jobs, "runs": args.runs, "baseline_ms": empty, "jobs_ms": full}) + "\n")


if __name__ == "__main__":
    main()
