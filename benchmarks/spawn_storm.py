"""Spawn storm: --users users start their servers at once, Carme vs plain batchspawner, in one run.

    /opt/carme/venv/bin/python benchmarks/spawn_storm.py [--users 50] [--probe-every 0.2] [--timeout 300]
        [--batchspawner-wrapper standin|real] [--quiet-window 10] [--cpu-census] [--profile DIR]
        [--carme-setting NAME=VALUE ...] [--nodes-nice N] [--no-floor]

Issue 24, benchmark 3. Per variant, one hub at a time on the local SLURM (sdiag counts the whole
controller):
  Carme                   jupyterhub_config.py + carme.example.yaml with every service a site runs that
                          the dev cluster can run (scale_hubs.ScaleCarmeHub)
  batchspawner (default)  plain batchspawner 1.3.0 (poll_interval 30 s, startup_poll_interval 0.5 s)
  JupyterHub alone        the floor (scale_floor_config.py): batchspawner's hub with a spawner that only
                          waits as long as Carme's spawn of each user took; its API latency is
                          JupyterHub's own in this storm (--no-floor skips it)
each server the tiny single-user STAND-IN (dev/standins/tiny-singleuser) behind the spawner's own batch
script, `{"gpus": 0, "image": "python-cpu"}` (1 CPU, 1024 MiB, partition interactive). --nodes-nice N
runs both slurmd (and so every job) at nice N, as if the nodes were machines of their own.

The users (load01.., created beforehand) are asked for at once: one thread per user POSTs
/hub/api/users/U/server; an answer 201 is ready (JupyterHub answers it once the server is up and
routed), 202 is followed on the spawn's progress stream until its "ready" or "failed" event; any
other answer is a refusal (4xx) or a failure (5xx) with the hub's message. A user is "clear" when
ready or told why (a message); "unclear" is anything else (no answer in --timeout, no message).
Meanwhile a probe process of its own (benchmarks/api_probe.py) sends `GET /hub/api/users` every
--probe-every seconds, open loop (each on time whether or not the last has answered: a stalled hub
is asked as often as a quick one), from 3 s before the storm until every user has an outcome.
`sdiag -r` just before the storm and `sdiag` once every user has an outcome count slurmctld's query
RPCs (as controller_load.py does). Reported per variant: outcomes, time to ready (median, p95, all),
hub API latency p50/p99/max during the storm (and before it), query RPCs; then the goals: Carme's
API p99 <= 250 ms, Carme's query RPCs <= 1/5 of batchspawner's, Carme's median time to ready <=
batchspawner's. Any exit cleans up: servers stopped, jobs named carme-bench-storm-* / bench-bs-storm
scancelled (no others), hubs stopped, the jobs' output files removed.
Writes benchmarks/results/spawn_storm-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.scale_hubs import (  # noqa: E402
    LOAD_USERS, OPTIONS, JobJanitor, ScaleBaselineHub, ScaleCarmeHub, ScaleFloorHub, Sdiag, check_wrapper, ensure_users, message_of,
    new_session, percentile, progress, ratio, run_variants, stop_all, use_a_hub_made_token, write_results,
)
from benchmarks.cpu_census import CpuCensus  # noqa: E402
from benchmarks.spawn_latency import step_medians  # noqa: E402

CARME_PREFIX, BASELINE_JOB = "carme-bench-storm-", "bench-bs-storm"
CARME_PORTS = (28260, 28341)  # public (+1 proxy API, +2..+10 services), hub
BASELINE_PORTS = (28290, 28371)  # public (+1 proxy API), hub
FLOOR_PORTS = (28310, 28391, 28315)  # public (+1 proxy API), hub, the shared responder
PROBE_LEAD_S = 3.0  # the probe runs this long before the storm: the hub's latency at rest
GOAL_P99_MS, GOAL_RPC_SHARE = 250.0, 0.2
FLOOR = "JupyterHub alone (floor)"


class ApiProbe:
    """GET /hub/api/users every `every` seconds from a process of its own (benchmarks/api_probe.py, so that
    the storm's 50 client threads here do not hold its answers up): (start, seconds, ok) of each request."""

    def __init__(self, hub, every: float):
        self.hub, self.every = hub, every
        self.samples: list[tuple[float, float, bool]] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "JUPYTERHUB_API_TOKEN": self.hub.token}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "api_probe.py"), f"{self.hub.api}/users",
                                      "--every", str(self.every)], stdout=subprocess.PIPE, text=True, env=env)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=40)
        for line in out.splitlines():
            began, took, ok = line.split()
            self.samples.append((float(began), float(took), ok == "1"))

    def stats(self, start: float, end: float) -> dict:
        inside = [(t, ok) for began, t, ok in self.samples if start <= began < end]
        ms = [t * 1000 for t, _ in inside]
        return {"requests": len(inside), "errors": sum(1 for _, ok in inside if not ok),
                "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
                "max_ms": round(max(ms), 1) if ms else None}


class HubProfiler:
    """py-spy sampling the hub's process during the storm (--profile): what its event loop spent the storm on.
    Writes <dir>/spawn_storm-<variant>.speedscope.json (speedscope.app)."""

    def __init__(self, out_dir: str, variant: str, pid: int):
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(spy, os.X_OK):
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        self.out = Path(out_dir) / f"spawn_storm-{variant.split()[0].lower()}"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # --nonblocking: the hub is never paused (a paused hub would answer the probe late)
        # --idle and speedscope: the samples in order, waiting ones too, so a stall of the loop shows as a run
        self.raw = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--idle",
                                     "--format", "speedscope", "-o", f"{self.out}.speedscope.json"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.raw.send_signal(signal.SIGINT)
        self.raw.wait(60)
        progress(f"profile: {self.out}.speedscope.json (py-spy's samples in order: speedscope.app shows them)")


class NodesNice:
    """--nodes-nice N: the two "nodes" run at nice N while the benchmark runs, a stand-in for nodes that are
    machines of their own (on a site the hub's host does not share its cores with the servers it starts).
    Every thread of every slurmd gets N; what slurmd starts inherits it (the prolog, slurmstepd and the
    job's processes: SLURM's PropagatePrioProcess=0, the default). Every hub of the run has it alike; the
    old values come back at the end."""

    def __init__(self, nice: int):
        self.nice, self.before = nice, {}

    def __enter__(self):
        if self.nice:
            pids = subprocess.run(["pgrep", "-x", "slurmd"], capture_output=True, text=True).stdout.split()
            if not pids:
                raise SystemExit("--nodes-nice: no slurmd runs here (make cluster)")
            for pid in pids:
                for task in os.listdir(f"/proc/{pid}/task"):
                    self.before[int(task)] = os.getpriority(os.PRIO_PROCESS, int(task))
                    os.setpriority(os.PRIO_PROCESS, int(task), self.nice)
            progress(f"nodes at nice {self.nice}: {len(pids)} slurmd, {len(self.before)} threads")
        return self

    def __exit__(self, *exc):
        for task, nice in self.before.items():
            try:
                os.setpriority(os.PRIO_PROCESS, task, nice)
            except OSError:  # the thread ended meanwhile
                pass


def told_why(message: str) -> bool:
    """Does `message` say more than JupyterHub's generic words ("Spawn failed: " with nothing after it)?"""
    rest = message.strip()
    for generic in ("Spawn failed:", "Unhandled error starting server", "Internal Server Error"):
        rest = rest.replace(generic, "")
    return bool(rest.strip(" .:"))


def spawn_one(hub, user: str, t0: float, timeout: float, abort: threading.Event) -> dict:
    """POST the user's server and follow it to an outcome; seconds from the storm's start `t0`. `abort`
    set (the benchmark is ending): give up at once."""
    session = new_session(hub)

    def outcome(kind: str, message: str = "", status: int | None = None) -> dict:
        return {"user": user, "outcome": kind, "seconds": round(time.monotonic() - t0, 3), "status": status,
                "message": message}

    try:
        try:
            r = session.post(hub.server_url(user), json=OPTIONS, timeout=timeout)
        except requests.RequestException as e:
            return outcome("unclear", f"POST: {e}")
        if r.status_code == 201:
            return outcome("ready", status=201)
        if r.status_code != 202:
            message = message_of(r)
            kind = ("refused" if r.status_code < 500 else "failed") if told_why(message) else "unclear"
            return outcome(kind, message, r.status_code)
        url = f"{hub.api}/users/{user}/server/progress"
        while time.monotonic() - t0 < timeout and not abort.is_set():
            try:
                with session.get(url, stream=True, timeout=(10, timeout)) as stream:
                    if stream.status_code != 200:  # not pending any more: the model says how it ended
                        model = session.get(f"{hub.api}/users/{user}", params={"include_stopped_servers": "1"},
                                            timeout=30).json().get("servers", {}).get("") or {}
                        if model.get("ready"):
                            return outcome("ready", status=202)
                        if model.get("stopped") and not model.get("pending"):
                            return outcome("unclear", "stopped without a ready or failed event", 202)
                        abort.wait(0.5)
                        continue
                    for line in stream.iter_lines(decode_unicode=True):  # the hub's keep-alives too
                        if abort.is_set() or time.monotonic() - t0 >= timeout:
                            break
                        if line and line.startswith("data:"):
                            event = json.loads(line[5:])
                            if event.get("ready"):
                                return outcome("ready", status=202)
                            if event.get("failed"):
                                message = str(event.get("message") or "")
                                return outcome("failed" if told_why(message) else "unclear", message, 202)
            except (requests.RequestException, ValueError) as e:
                if abort.wait(0.5) or time.monotonic() - t0 >= timeout:
                    return outcome("unclear", f"progress: {e}", 202)
        return outcome("unclear", f"no outcome in {timeout:.0f} s", 202)
    finally:
        session.close()


def run_variant(name: str, hub, users: tuple[str, ...], args, janitor: JobJanitor) -> dict:
    progress(f"{name}: starting the hub on {hub.url}")
    probe, abort = None, threading.Event()
    try:
        hub.start()
        ensure_users(hub, users)
        use_a_hub_made_token(hub)
        time.sleep(2)  # the hub's and services' start-up requests are behind it
        probe = ApiProbe(hub, args.probe_every)
        probe.start()
        time.sleep(PROBE_LEAD_S)
        sdiag = Sdiag()
        sdiag.reset()
        profiler = HubProfiler(args.profile, name, hub.proc.pid) if args.profile and name == "Carme" else None
        census = CpuCensus(0.2) if args.cpu_census else None
        if census:
            census.start()
        t0 = time.monotonic()
        pool = ThreadPoolExecutor(len(users))
        outcomes = list(pool.map(lambda u: spawn_one(hub, u, t0, args.timeout, abort), users))
        pool.shutdown()
        done = time.monotonic()
        counts = sdiag.read()
        cpu = census.stop() if census else None
        probe.stop()
        if profiler:
            profiler.stop()
        janitor.note()
        ready = sorted(o["seconds"] for o in outcomes if o["outcome"] == "ready")
        kinds = {k: sum(1 for o in outcomes if o["outcome"] == k) for k in ("ready", "refused", "failed", "unclear")}
        result = {"variant": name, "users": len(users), "outcomes": kinds,
                  "all_clear": kinds["unclear"] == 0,
                  "ready_median_s": round(statistics.median(ready), 2) if ready else None,
                  "ready_p95_s": round(percentile(ready, 95), 2) if ready else None,
                  "all_ready_s": round(ready[-1], 2) if ready and kinds["ready"] == len(users) else None,
                  "last_outcome_s": round(done - t0, 2),
                  "api_during": probe.stats(t0, done), "api_before": probe.stats(t0 - PROBE_LEAD_S, t0),
                  "rpcs": counts.summary(), "ready_s": ready,
                  "cpu": cpu,
                  "carme_steps_median_s": step_medians(hub) if name == "Carme" else None,
                  "api_timeline": [[round(b - t0, 2), round(t * 1000, 1)] for b, t, _ in probe.samples if b >= t0 - 1],
                  "not_ready": [o for o in outcomes if o["outcome"] != "ready"],
                  "outcomes_by_user": [{"user": o["user"], "outcome": o["outcome"], "seconds": o["seconds"]}
                                       for o in outcomes]}
        api = result["api_during"]
        progress(f"{kinds}; ready median {result['ready_median_s']} s, all ready {result['all_ready_s']} s; "
                 f"API p50 {api['p50_ms']} ms p99 {api['p99_ms']} ms ({api['requests']} probes, {api['errors']} errors); "
                 f"{counts.queries} query RPCs")
        if result["carme_steps_median_s"]:
            progress("step medians (s after the request): " + ", ".join(
                f"{k} {v:.2f}" for k, v in result["carme_steps_median_s"].items()))
        if cpu:
            progress(f"CPU in the storm: {cpu['cpu_s']} s in {cpu['window_s']} s; " + ", ".join(
                f"{k} {v['cpu_s']}" for k, v in list(cpu["by_kind"].items())[:14]))
        if args.profile:
            shutil.copy(hub.log_path, Path(args.profile) / f"spawn_storm-{name.split()[0].lower()}-hub.log")
        for o in result["not_ready"][:5]:
            print(f"   {o['user']}: {o['outcome']} (HTTP {o['status']}) {o['message'][:200]}", flush=True)
        return result
    finally:
        abort.set()  # an interrupted storm's threads stop following their spawns
        if probe:
            probe.stop()
        if hub.proc and hub.proc.poll() is None:
            progress(f"stopping {len(users)} servers")
            try:
                for problem in stop_all(hub, [(u, "") for u in users]):
                    print(f"   stopping: {problem}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - the clean-up goes on; leftovers are scancelled below
                print(f"   stopping the servers: {e}", file=sys.stderr)
        janitor.cancel()
        hub.close()


def report(results: list[dict]) -> list[str]:
    head = (f"{'variant':<26}{'ready':>6}{'refused':>8}{'failed':>7}{'unclear':>8}{'med s':>7}{'p95 s':>7}"
            f"{'all s':>7}{'API p50':>9}{'API p99':>9}{'API max':>9}{'queries':>9}{'q/min':>7}{'all rpcs':>9}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for r in results:
        o, api, rpcs = r["outcomes"], r["api_during"], r["rpcs"]
        lines.append(f"{r['variant']:<26}{o['ready']:>6}{o['refused']:>8}{o['failed']:>7}{o['unclear']:>8}"
                     f"{r['ready_median_s'] or nan:>7.2f}{r['ready_p95_s'] or nan:>7.2f}{r['all_ready_s'] or nan:>7.2f}"
                     f"{api['p50_ms']:>9.1f}{api['p99_ms']:>9.1f}{api['max_ms'] or nan:>9.1f}"
                     f"{rpcs['query_rpcs']:>9}{rpcs['query_rpcs_per_min']:>7.1f}{rpcs['all_rpcs']:>9}"
                     + ("  (stats reset inside)" if rpcs["reset_inside"] else ""))
    for r in results:
        lines.append(f"  {r['variant']}: query RPCs by kind {r['rpcs']['query_kinds']}, by user (all RPCs) "
                     f"{dict(list(r['rpcs']['by_user'].items())[:6])}; API before the storm p50 "
                     f"{r['api_before']['p50_ms']} ms")
    return lines


def goals(carme: dict, base: dict) -> list[dict]:
    c_med, b_med = carme["ready_median_s"], base["ready_median_s"]
    c_q, b_q = carme["rpcs"]["query_rpcs"], base["rpcs"]["query_rpcs"]
    return [
        {"goal": f"Carme's hub API p99 <= {GOAL_P99_MS:g} ms during the storm", "value": carme["api_during"]["p99_ms"],
         "baseline": base["api_during"]["p99_ms"], "met": carme["api_during"]["p99_ms"] <= GOAL_P99_MS},
        {"goal": "Carme's query RPCs <= 1/5 of batchspawner's", "value": c_q, "baseline": b_q,
         "ratio": ratio(c_q, b_q), "met": c_q <= GOAL_RPC_SHARE * b_q},
        {"goal": "Carme's median time to ready <= batchspawner's", "value": c_med, "baseline": b_med,
         "ratio": ratio(c_med, b_med) if c_med is not None and b_med else None,
         "met": c_med is not None and b_med is not None and c_med <= b_med},
        {"goal": "every Carme user ready or told why", "value": carme["outcomes"], "met": carme["all_clear"]},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=len(LOAD_USERS), help="users starting at once (default 50)")
    parser.add_argument("--probe-every", type=float, default=0.2,
                        help="seconds between hub API probes, open loop (default 0.2: a listing of 50 users costs "
                        "the hub ~40 ms, a probe every 0.1 s would take a fifth of its CPU itself)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a user may wait for an outcome (default 300)")
    parser.add_argument("--batchspawner-wrapper", choices=("standin", "real"), default="standin",
                        help="how batchspawner's servers report their port: the stand-in's own copy of "
                        "batchspawner-singleuser's report (default; as cheap as Carme's launcher) or the real "
                        "batchspawner-singleuser (~100 MB per server: at most ~100 servers on this host)")
    parser.add_argument("--carme-setting", metavar="NAME=VALUE", action="append", default=[],
                        help="a CARME__ setting for the Carme hub, e.g. CarmeSpawner__start_gate_dir= (repeatable)")
    parser.add_argument("--cpu-census", action="store_true",
                        help="CPU seconds by kind of process during the storm, from /proc (costs a little CPU itself)")
    parser.add_argument("--profile", metavar="DIR", help="sample the Carme hub with py-spy during the storm into DIR")
    parser.add_argument("--nodes-nice", type=int, default=0, metavar="N",
                        help="run the nodes' slurmd (and so the prologs, jobs and servers) at nice N, 1..19, for every hub "
                        "variants: the hub keeps a core as it would on a host of its own (default 0: as they are)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the third hub, JupyterHub alone with a spawner that only waits as long as Carme's "
                        "spawn of each user took (the floor under Carme's API latency)")
    parser.add_argument("--quiet-window", type=float, default=10, help="seconds of sdiag with no hub first (0: skip)")
    args = parser.parse_args()
    if not 1 <= args.users <= len(LOAD_USERS):
        parser.error(f"--users must be 1..{len(LOAD_USERS)}")
    if not 0 <= args.nodes_nice <= 19:
        parser.error("--nodes-nice must be 0..19")
    users = LOAD_USERS[: args.users]
    check_wrapper(args.batchspawner_wrapper)
    carme_env = {}
    for setting in args.carme_setting:
        name, eq, value = setting.partition("=")
        if not eq or not name:
            parser.error(f"--carme-setting {setting!r}: must be NAME=VALUE")
        carme_env[f"CARME__{name}"] = value
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally: below
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    carme_took: dict[str, float] = {}  # each user's seconds to an outcome in Carme's run: the floor waits as long

    def run_one(name, hub):
        result = run_variant(name, hub, users, args, janitor)
        if name == "Carme":
            carme_took.update({o["user"]: o["seconds"] for o in result["outcomes_by_user"]})
        return [result]

    variants = [
        ("Carme", lambda: ScaleCarmeHub(CARME_PORTS[0], CARME_PREFIX, CARME_PORTS[1], extra_env=carme_env)),
        ("batchspawner (default)", lambda: ScaleBaselineHub(30, *BASELINE_PORTS, job_name=BASELINE_JOB, users=users,
                                                            wrapper=args.batchspawner_wrapper)),
    ]
    if not args.no_floor:
        variants.append((FLOOR, lambda: ScaleFloorHub(*FLOOR_PORTS, users=users, delays=dict(carme_took))))
    janitor = JobJanitor(CARME_PREFIX, BASELINE_JOB)
    began = time.monotonic()
    with NodesNice(args.nodes_nice):
        results, quiet = run_variants(variants, users, janitor, args.quiet_window, run_one, "the storm's users")
    print()
    print("\n".join(report(results)))
    checked = goals(results[0], results[1])
    print("\ngoals:")
    for g in checked:
        extra = f" (ratio {g['ratio']})" if g.get("ratio") else ""
        print(f"  [{'met' if g['met'] else 'NOT met'}] {g['goal']}: Carme {g['value']}, batchspawner "
              f"{g.get('baseline', '-')}{extra}")
    floor = next((r for r in results if r["variant"] == FLOOR), None)
    if floor:
        c_api, f_api = results[0]["api_during"], floor["api_during"]
        print(f"\nagainst the floor (JupyterHub alone, the same users waiting as long as in Carme's run): API p50 "
              f"{c_api['p50_ms']} vs {f_api['p50_ms']} ms, p99 {c_api['p99_ms']} vs {f_api['p99_ms']} ms "
              f"(Carme/floor {ratio(c_api['p99_ms'], f_api['p99_ms'])}); the floor's hub CPU in the storm "
              f"{(floor['cpu'] or {}).get('by_kind', {}).get('hub', {}).get('cpu_s', '-')} s")
    took = time.monotonic() - began
    print(f"\nran {took / 60:.1f} min")
    write_results("spawn_storm", took, {
        "users": len(users), "probe_every_s": args.probe_every, "options": OPTIONS, "server": "tiny-singleuser STAND-IN",
        "batchspawner_wrapper": args.batchspawner_wrapper, "quiet_check": quiet, "carme_settings": carme_env,
        "nodes_nice": args.nodes_nice, "floor": not args.no_floor,
        "results": results, "goals": checked})
    return 0


if __name__ == "__main__":
    sys.exit(main())
