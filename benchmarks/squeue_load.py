"""SLURM query load and spawn latency: Carme's one shared squeue watch vs plain batchspawner.

    /opt/carme/venv/bin/python benchmarks/squeue_load.py [--servers N] [--window S]

Why: every hub asks slurmctld about its servers' jobs. batchspawner 1.3.0 runs
`squeue -h -j ID -o '%T %B'` per spawner per poll (JupyterHub's Spawner.poll_interval, 30 s by
default, and every 0.5 s while a server starts), so the load grows with the number of servers.
Carme runs ONE `squeue --all --json` per interval (5 s) for all its servers, so the load is flat
in N but fresher than batchspawner's default. The benchmark shows both sides of that trade.

What, per variant (Carme; batchspawner with poll_interval 30 s = its default; batchspawner with
poll_interval 5 s = the same freshness as Carme), each on its own real JupyterHub +
configurable-http-proxy on the local SLURM, with a counting `squeue` wrapper first on the hub's
PATH (it logs start and end of every call the hub or its runuser children make):
  1. start N servers (alice, bob, ...) ONE AFTER ANOTHER and time each from the POST to the
     hub's model saying ready (spawn-to-ready seconds);
  2. with all N running, count the squeue calls started within a window of S seconds (and the
     seconds they took);
  3. stop the servers and the hub. Any exit cleans up: servers stopped, this benchmark's own
     jobs scancelled (job names carme-bench-* and bench-batchspawner only), hubs stopped,
     temp dirs and the jobs' logs removed.
Prints a table and writes it as JSON to benchmarks/results/squeue_load-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.integration.hub import REPO, Hub  # noqa: E402

USERS = ("alice", "bob", "carol", "dave")  # at most 4 servers per hub on the shared cluster
OPTIONS = {"gpus": 0, "image": "python-cpu"}
CARME_PREFIX, BASELINE_JOB = "carme-bench-", "bench-batchspawner"

# like the test wrapper, but logs "start end args" after the call (the time it took is load too)
TIMING_WRAPPER = """#!/bin/bash
DIR=$(dirname "$0")
start=$(date +%s.%N)
/usr/bin/squeue "$@"
rc=$?
echo "$start $(date +%s.%N) $*" >> "$DIR/squeue.calls"
exit $rc
"""


class BenchHub(Hub):
    """Hub with a timing squeue wrapper that the users may run too (batchspawner's exec_prefix)."""

    config_file = REPO / "jupyterhub_config.py"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        (self.bindir / "squeue").write_text(TIMING_WRAPPER)
        os.chmod(self.workdir, 0o711)  # traversable, not listable; state/ stays 0700
        os.chmod(self.bindir, 0o755)
        calls = self.bindir / "squeue.calls"
        calls.touch()
        calls.chmod(0o666)
        self.log_path.touch(mode=0o600)

    def start(self, timeout: float = 90) -> None:
        super().start(timeout)  # Hub.start with self.config_file

    def squeue_log(self) -> list[tuple[float, float]]:
        path = self.bindir / "squeue.calls"
        return [(float(line.split()[0]), float(line.split()[1])) for line in path.read_text().splitlines() if line.strip()]


class BaselineHub(BenchHub):
    """Plain JupyterHub + batchspawner.SlurmSpawner (benchmarks/baseline_jupyterhub_config.py)."""

    config_file = HERE / "baseline_jupyterhub_config.py"

    def __init__(self, poll_interval: int, **kwargs):
        super().__init__(**kwargs)
        self.poll_interval = poll_interval

    def env(self) -> dict[str, str]:
        carme = super().env()
        return {
            "PATH": carme["PATH"],
            "LANG": carme["LANG"],
            "BENCH_STATE_DIR": str(self.workdir / "state"),
            "BENCH_BIND_URL": self.url,
            "BENCH_HUB_PORT": str(self.hub_port),
            "BENCH_PROXY_API_URL": f"http://127.0.0.1:{self.proxy_api_port}",
            "BENCH_SERVICES": carme["CARME__JupyterHub__services"],
            "BENCH_ROLES": carme["CARME__JupyterHub__load_roles"],
            "BENCH_PASSWORD": carme["CARME_DEMO_PASSWORD"],
            "BENCH_POLL_INTERVAL": str(int(self.poll_interval)),
            **{k: v for k, v in self.extra_env.items() if k.startswith("BENCH_")},
        }


def my_jobs() -> dict[str, str]:
    """{job id: name} of this benchmark's jobs only (never anyone else's)."""
    out = subprocess.run(["/usr/bin/squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    jobs = dict(line.split(maxsplit=1) for line in out.splitlines() if len(line.split()) == 2)
    return {i: n for i, n in jobs.items() if n.startswith(CARME_PREFIX) or n == BASELINE_JOB}


def wait_ready(hub: BenchHub, user: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.server_model(user)
        if model and model.get("ready"):
            return
        if model and not model.get("pending") and model.get("stopped"):
            raise RuntimeError(f"{user}'s server stopped while starting\n{hub.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"{user}'s server not ready in {timeout} s\n{hub.log_tail()}")


def run_variant(name: str, hub: BenchHub, users: tuple[str, ...], window: float, job_logs: list[Path]) -> dict:
    print(f"== {name}: starting the hub on {hub.url}", flush=True)
    try:
        hub.start()
        spawn_began, spawn_seconds = time.time(), []
        for user in users:
            t0 = time.time()
            r = hub.start_server(user, OPTIONS)
            if r.status_code not in (201, 202):
                raise RuntimeError(f"spawn {user}: HTTP {r.status_code} {r.text}")
            wait_ready(hub, user)
            spawn_seconds.append(time.time() - t0)
            print(f"   {user}: ready in {spawn_seconds[-1]:.1f} s (job {hub.job_id(user)})", flush=True)
        start = time.time()
        time.sleep(window)
        time.sleep(1)  # let calls begun inside the window finish and be logged
        log = hub.squeue_log()
        calls = [(s, e) for s, e in log if start <= s < start + window]
        spawn_calls = [s for s, _ in log if spawn_began <= s < start]
        result = {
            "variant": name, "servers": len(users), "window_s": window, "squeue_calls": len(calls),
            "calls_per_min": len(calls) * 60 / window, "calls_per_min_per_server": len(calls) * 60 / window / len(users),
            "squeue_seconds_per_min": sum(e - s for s, e in calls) * 60 / window,
            "squeue_calls_during_spawns": len(spawn_calls),
            "spawn_s": [round(s, 2) for s in spawn_seconds],
            "spawn_median_s": statistics.median(spawn_seconds), "spawn_max_s": max(spawn_seconds),
        }
        print(f"   {len(calls)} squeue calls in {window:.0f} s", flush=True)
        return result
    finally:
        for user in users:
            try:
                job = hub.job_id(user)  # the job's output file is ours to remove
                if job:
                    job_logs.append(Path(f"/tmp/{BASELINE_JOB}-{user}-{job}.log") if isinstance(hub, BaselineHub)
                                    else Path(f"/home/{user}/.carme/jobs/carme-{job}.log"))
                hub.stop_server(user, timeout=60)
            except Exception as e:  # noqa: BLE001 - cleanup goes on; leftovers are scancelled below
                print(f"   stopping {user}: {e}", file=sys.stderr)
        cleanup_jobs()
        hub.close()


def cleanup_jobs(wait: float = 30) -> None:
    jobs = my_jobs()
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)
    deadline = time.monotonic() + wait
    while my_jobs() and time.monotonic() < deadline:
        time.sleep(1)


def ratio(a: dict, b: dict, key: str) -> str:
    return f"{a[key] / b[key]:.2f}" if b[key] else "n/a (baseline 0)"


def table(results: list[dict]) -> str:
    head = f"{'variant':<34}{'servers':>8}{'window s':>9}{'squeue':>8}{'/min':>8}{'/min/srv':>9}" \
           f"{'squeue s/min':>13}{'in spawns':>10}{'spawn med s':>12}{'spawn max s':>12}"
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r['variant']:<34}{r['servers']:>8}{r['window_s']:>9.0f}{r['squeue_calls']:>8}"
                    f"{r['calls_per_min']:>8.1f}{r['calls_per_min_per_server']:>9.2f}{r['squeue_seconds_per_min']:>13.2f}"
                    f"{r['squeue_calls_during_spawns']:>10}{r['spawn_median_s']:>12.1f}{r['spawn_max_s']:>12.1f}")
    carme = results[0]
    for base in results[1:]:
        rows.append(f"Carme / {base['variant']}: squeue calls per minute {ratio(carme, base, 'calls_per_min')}, "
                    f"median spawn time {ratio(carme, base, 'spawn_median_s')}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=4, help=f"servers per hub (1..{len(USERS)})")
    parser.add_argument("--window", type=float, default=60, help="seconds of counting with all servers running")
    args = parser.parse_args()
    if not 1 <= args.servers <= len(USERS):
        parser.error(f"--servers must be 1..{len(USERS)} (the cluster is shared)")
    users = USERS[: args.servers]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally: below
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    variants = [
        ("Carme (watch every 5 s)", lambda: BenchHub(slurm_poll_interval=5, ports=(28000, 28081, 28001),
                                                     job_prefix=CARME_PREFIX)),
        ("batchspawner (poll_interval 30 s)", lambda: BaselineHub(30, ports=(28100, 28181, 28101))),
        ("batchspawner (poll_interval 5 s)", lambda: BaselineHub(5, ports=(28100, 28181, 28101))),
    ]
    results, job_logs = [], []
    try:
        cleanup_jobs()  # leftovers of an interrupted run of this benchmark
        for name, make_hub in variants:
            results.append(run_variant(name, make_hub(), users, args.window, job_logs))
    finally:
        cleanup_jobs()
        for path in job_logs:
            path.unlink(missing_ok=True)
    print()
    print(table(results))
    slurm = subprocess.run(["scontrol", "--version"], capture_output=True, text=True).stdout.strip()
    out = HERE / "results" / f"squeue_load-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                               "slurm": slurm, "servers": len(users), "window_s": args.window,
                               "options": OPTIONS, "results": results}, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
