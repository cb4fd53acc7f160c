"""Controller load at N running servers, counted by slurmctld itself (`sdiag`): Carme vs plain batchspawner.

    /opt/carme/venv/bin/python benchmarks/controller_load.py [--sizes 10,50,200] [--users 50] [--window 60]
        [--with-poll-5s] [--batchspawner-wrapper standin|real] [--batch 25] [--settle 2] [--quiet-window 10]

Issue 24, benchmark 2. Per variant, one hub at a time on the local SLURM (sdiag counts the whole
controller, so nothing else may run beside it):
  Carme                              jupyterhub_config.py + carme.example.yaml with every service a site
                                     runs that the dev cluster can run (catalog, quota, reconcile,
                                     reservations, culler, sessions, cockpit, announcements), its one
                                     shared watch every 5 s
  batchspawner (poll_interval 30 s)  plain batchspawner 1.3.0, JupyterHub's default poll
  batchspawner (poll_interval 5 s)   the same at Carme's freshness (--with-poll-5s)
the servers grow to each N of --sizes in turn (batches of --batch started at once, each server
the tiny single-user STAND-IN, dev/standins/tiny-singleuser, behind the spawner's own batch script:
Carme's launcher and container command, batchspawner's batchspawner-singleuser). Server k is
named s<k // users + 1> of load<k % users + 1>: 200 = 50 users x 4 (the role's max_servers and the
associations' MaxJobs are 4). With all N ready, after --settle seconds: `sdiag -r`, --window seconds,
`sdiag`. Counted: slurmctld's query RPCs (REQUEST_*_INFO*: job, node, partition, reservation, and
others such as FED_INFO and SHARE_INFO; sdiag's own REQUEST_STATS_INFO left out), per minute and by
user; beside them the squeue/sinfo/scontrol calls the hub's PATH wrapper logged in the same window.
Before the first hub, --quiet-window seconds with no benchmark hub show whether the controller is
otherwise quiet. Any exit cleans up: servers stopped, jobs named carme-bench-load-* / bench-bs-load
scancelled (no others), hubs stopped, the jobs' output files removed.
Writes benchmarks/results/controller_load-<date>.json.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.scale_hubs import (  # noqa: E402
    KINDS, LOAD_USERS, MAX_SERVERS_PER_USER, OPTIONS, JobJanitor, ScaleBaselineHub, ScaleCarmeHub, Sdiag,
    all_servers, check_wrapper, ensure_users, message_of, new_session, progress, ratio, run_variants,
    stop_all, write_results,
)

CARME_PREFIX, BASELINE_JOB = "carme-bench-load-", "bench-bs-load"
CARME_PORTS = (28220, 28301)  # public (+1 proxy API, +2..+10 services), hub
BASELINE_PORTS = (28240, 28321)  # public (+1 proxy API), hub


def server_slots(users: tuple[str, ...], n: int) -> list[tuple[str, str]]:
    return [(users[k % len(users)], f"s{k // len(users) + 1}") for k in range(n)]


def start_servers(hub, servers: list[tuple[str, str]], batch: int, timeout: float) -> list[float]:
    """Start `servers`, `batch` at a time (POSTed at once); seconds from each batch's start to each ready."""
    ready_s = []
    for i in range(0, len(servers), batch):
        chunk = servers[i:i + batch]
        t0 = time.monotonic()

        def post(server):
            session = new_session(hub)
            try:
                r = session.post(hub.server_url(*server), json=OPTIONS, timeout=timeout)
                return r, time.monotonic() - t0
            finally:
                session.close()

        with ThreadPoolExecutor(len(chunk)) as pool:
            answers = list(pool.map(post, chunk))
        pending = set()
        for server, (r, took) in zip(chunk, answers):
            if r.status_code == 201:
                ready_s.append(took)  # JupyterHub answers 201 once the server is up and routed
            elif r.status_code == 202:
                pending.add(server)
            else:
                raise RuntimeError(f"spawn {server}: HTTP {r.status_code} {message_of(r)}\n{hub.log_tail()}")
        while pending:
            models = all_servers(hub)
            now = time.monotonic() - t0
            for server in list(pending):
                model = models.get(server) or {}
                if model.get("ready"):
                    ready_s.append(now)
                    pending.discard(server)
                elif not model.get("pending") and model.get("stopped"):
                    raise RuntimeError(f"{server} stopped while starting\n{hub.log_tail()}")
            if pending and now > timeout:
                raise RuntimeError(f"not ready in {timeout:.0f} s: {sorted(pending)}\n{hub.log_tail()}")
            if pending:
                time.sleep(0.5)
    return ready_s


def wrapper_counts(hub, began: float, ended: float) -> dict[str, int]:
    """squeue / sinfo / scontrol calls the hub's PATH wrapper logged as begun in [began, ended) (wall clock)."""
    counts = {"squeue": sum(1 for s, _ in hub.squeue_log() if began <= s < ended)}
    for name in ("sinfo", "scontrol"):
        counts[name] = sum(1 for when, _ in hub.query_calls(name) if began <= when < ended)
    return counts


def run_variant(name: str, hub, users: tuple[str, ...], sizes: list[int], args, janitor: JobJanitor) -> list[dict]:
    progress(f"{name}: starting the hub on {hub.url}")
    slots = server_slots(users, max(sizes))
    running: list[tuple[str, str]] = []
    results = []
    try:
        hub.start()
        ensure_users(hub, users)
        for n in sizes:
            progress(f"growing to {n} servers")
            t0 = time.monotonic()
            spawn_s = start_servers(hub, slots[len(running):n], args.batch, args.spawn_timeout)
            running = slots[:n]
            grow_s = time.monotonic() - t0
            time.sleep(args.settle)  # start-up polls over (batchspawner's every 0.5 s until ready)
            jobs = janitor.note()
            sdiag = Sdiag()
            wall0 = time.time()
            sdiag.reset()
            time.sleep(args.window)
            counts = sdiag.read()
            wall1 = time.time()
            time.sleep(1)  # the wrapper logs a call when it ends
            wrapper = wrapper_counts(hub, wall0, wall1)
            minutes = counts.seconds / 60
            row = {"variant": name, "servers": n, "slurm_jobs": len(jobs), **counts.summary(),
                   "query_kinds_per_min": {k: round(v / minutes, 2) for k, v in counts.kinds().items()},
                   "wrapper_calls": wrapper, "wrapper_calls_per_min": {k: round(v / minutes, 2) for k, v in wrapper.items()},
                   "grow_s": round(grow_s, 1), "spawn_median_s": round(statistics.median(spawn_s), 2) if spawn_s else None,
                   "spawn_max_s": round(max(spawn_s), 2) if spawn_s else None}
            results.append(row)
            progress(f"N={n}: {row['query_rpcs']} query RPCs in {counts.seconds:.0f} s = {row['query_rpcs_per_min']:.1f}/min "
                     f"{row['query_kinds_per_min']}; wrapper squeue {wrapper['squeue']}; by user {row['by_user']}; "
                     f"grew in {grow_s:.0f} s")
        return results
    finally:
        if hub.proc and hub.proc.poll() is None:
            progress(f"stopping {len(running)} servers")
            try:
                for problem in stop_all(hub, running):
                    print(f"   stopping: {problem}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - the clean-up goes on; leftovers are scancelled below
                print(f"   stopping the servers: {e}", file=sys.stderr)
        janitor.cancel()
        hub.close()


def table(results: list[dict]) -> str:
    head = (f"{'variant':<36}{'N':>5}{'query/min':>11}" + "".join(f"{k[:5] + '/min':>11}" for k in KINDS)
            + f"{'squeue/min':>12}{'root/min':>10}{'users/min':>11}{'spawn med s':>12}")
    rows = [head, "-" * len(head)]
    for r in results:
        per_min = 60 / r["seconds"]
        users = sum(n for u, n in r["by_user"].items() if u != "root") * per_min
        rows.append(f"{r['variant']:<36}{r['servers']:>5}{r['query_rpcs_per_min']:>11.1f}"
                    + "".join(f"{r['query_kinds_per_min'][k]:>11.1f}" for k in KINDS)
                    + f"{r['wrapper_calls_per_min']['squeue']:>12.1f}{r['by_user'].get('root', 0) * per_min:>10.1f}"
                    + f"{users:>11.1f}{r['spawn_median_s'] if r['spawn_median_s'] is not None else float('nan'):>12.2f}"
                    + ("  (stats reset inside the window)" if r["reset_inside"] else ""))
    return "\n".join(rows)


def ratios(results: list[dict]) -> list[dict]:
    carme = {r["servers"]: r for r in results if r["variant"].startswith("Carme")}
    out = []
    for r in results:
        if r["variant"].startswith("Carme") or r["servers"] not in carme:
            continue
        c = carme[r["servers"]]
        out.append({"servers": r["servers"], "baseline": r["variant"],
                    "carme_query_per_min": c["query_rpcs_per_min"], "baseline_query_per_min": r["query_rpcs_per_min"],
                    "carme_over_baseline": ratio(c["query_rpcs_per_min"], r["query_rpcs_per_min"])})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="numbers of running servers, ascending (default 10,50,200)")
    parser.add_argument("--users", type=int, default=len(LOAD_USERS), help="load users to spread the servers over (default 50)")
    parser.add_argument("--window", type=float, default=60, help="seconds counted with all N running (default 60)")
    parser.add_argument("--settle", type=float, default=2, help="seconds between the last ready and sdiag -r (default 2)")
    parser.add_argument("--batch", type=int, default=25, help="servers started at once while growing (default 25)")
    parser.add_argument("--spawn-timeout", type=float, default=300, help="seconds a batch may take to be ready")
    parser.add_argument("--batchspawner-wrapper", choices=("standin", "real"), default="standin",
                        help="how batchspawner's servers report their port: the stand-in's own copy of "
                        "batchspawner-singleuser's report (default; as cheap as Carme's launcher) or the real "
                        "batchspawner-singleuser (~100 MB per server: at most ~100 servers on this host)")
    parser.add_argument("--with-poll-5s", action="store_true", help="also batchspawner at poll_interval 5 s")
    parser.add_argument("--quiet-window", type=float, default=10, help="seconds of sdiag with no hub first (0: skip)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes: comma-separated integers")
    if not 1 <= args.users <= len(LOAD_USERS):
        parser.error(f"--users must be 1..{len(LOAD_USERS)}")
    users = LOAD_USERS[: args.users]
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_SERVERS_PER_USER * len(users):
        parser.error(f"--sizes: 1..{MAX_SERVERS_PER_USER * len(users)} ({MAX_SERVERS_PER_USER} servers per user)")
    if args.window % 30:
        print(f"warning: --window {args.window:g} is not a multiple of 30 s (batchspawner's default poll, Carme's node "
              "and reservation reads): a server's polls may all fall outside it", flush=True)
    check_wrapper(args.batchspawner_wrapper)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally: below
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    def baseline(poll_interval: int) -> ScaleBaselineHub:
        return ScaleBaselineHub(poll_interval, *BASELINE_PORTS, job_name=BASELINE_JOB, users=users,
                                wrapper=args.batchspawner_wrapper)

    variants = [
        ("Carme (watch every 5 s)", lambda: ScaleCarmeHub(CARME_PORTS[0], CARME_PREFIX, CARME_PORTS[1])),
        ("batchspawner (poll_interval 30 s)", lambda: baseline(30)),
    ]
    if args.with_poll_5s:
        variants.append(("batchspawner (poll_interval 5 s)", lambda: baseline(5)))
    janitor = JobJanitor(CARME_PREFIX, BASELINE_JOB)
    began = time.monotonic()
    results, quiet = run_variants(variants, users, janitor, args.quiet_window,
                                  lambda name, hub: run_variant(name, hub, users, sizes, args, janitor), "the load users")
    print()
    print(table(results))
    print("\nquery RPCs per minute, Carme / baseline at each N:")
    compared = ratios(results)
    for r in compared:
        print(f"  N={r['servers']:<4} vs {r['baseline']:<34} {r['carme_query_per_min']:8.1f} / "
              f"{r['baseline_query_per_min']:8.1f} = {r['carme_over_baseline']}")
    carme = [r["query_rpcs_per_min"] for r in results if r["variant"].startswith("Carme")]
    if carme and min(carme):
        print(f"Carme flat in N: max / min of its query RPCs per minute over N = {max(carme) / min(carme):.2f}")
    took = time.monotonic() - began
    print(f"\nran {took / 60:.1f} min")
    write_results("controller_load", took, {
        "sizes": sizes, "users": len(users), "window_s": args.window, "settle_s": args.settle, "batch": args.batch,
        "options": OPTIONS, "batchspawner_wrapper": args.batchspawner_wrapper, "server": "tiny-singleuser STAND-IN",
        "quiet_check": quiet, "results": results, "ratios": compared})
    return 0


if __name__ == "__main__":
    sys.exit(main())
