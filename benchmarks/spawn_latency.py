"""Spawn latency, one server at a time: Carme step by step, against the floor and batchspawner.

    /opt/carme/venv/bin/python benchmarks/spawn_latency.py [--samples N]

What, in one run on the local SLURM (users alice..erin in turn, one CPU-only server each time,
partition interactive, 1 CPU, 1024 MiB), each figure the median of N samples:

  floor, jupyter-server            sbatch (as the user) of a bare `jupyter-server` on a known port,
                                   timed until it answers HTTP: what no spawner can beat
  floor, jupyterhub-singleuser     the same with the single-user server every hub runs
                                   (its hub API calls go to the Carme hub of this run)
  Carme                            POST /hub/api/users/U/server until the hub says ready, and
                                   the per-step medians from the hub's "Spawn U: ready in" lines
  batchspawner (default)           plain batchspawner 1.3.0, startup_poll_interval 0.5 s
  batchspawner (fastest)           startup_poll_interval 0.05 s (each poll is a squeue)

and the ratios of every total to both floors. Then a storm: --storm servers (named servers of
alice..erin) asked for at once, each timed from the common start to ready, on Carme and on
batchspawner at its fastest. Any exit cleans up: servers stopped, this
benchmark's jobs scancelled (names carme-bench-*, bench-batchspawner, bench-floor), hubs
stopped. Writes benchmarks/results/spawn_latency-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.squeue_load import BaselineHub, BenchHub, cleanup_jobs  # noqa: E402
from tests.integration.hub import REPO  # noqa: E402

USERS = ("alice", "bob", "carol", "dave", "erin")
OPTIONS = {"gpus": 0, "image": "python-cpu"}
FLOOR_JOB = "bench-floor"
VENV = Path("/opt/carme/venv/bin")
STEP_LINE = re.compile(r"Spawn (\w+): ready in ([0-9.]+) s: (.*)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2, allow_redirects=False)
            return
        except requests.RequestException:
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def floor_once(user: str, singleuser: bool, hub: BenchHub | None) -> float:
    """sbatch a bare server as `user` and time it until it answers; then cancel it."""
    port = free_port()
    prefix = f"/user/{user}/"
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    if singleuser:
        command = f"exec {VENV}/jupyterhub-singleuser --ip=127.0.0.1 --port={port}"
        env.update(JUPYTERHUB_API_TOKEN=hub.user_token(user), JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.hub_port}/hub/api",
                   JUPYTERHUB_BASE_URL="/", JUPYTERHUB_SERVICE_PREFIX=prefix, JUPYTERHUB_USER=user,
                   JUPYTERHUB_CLIENT_ID=f"jupyterhub-user-{user}", JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}{prefix}")
        url = f"http://127.0.0.1:{port}{prefix}api"
    else:
        command = f"exec {VENV}/jupyter-server --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --no-browser"
        url = f"http://127.0.0.1:{port}/api"
    t0 = time.monotonic()
    out = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "-J", FLOOR_JOB, "-p", "interactive", "-t", "10",
         "--mem=1024M", "-c", "1", "-o", "/dev/null", "--export=ALL", "--wrap", command],
        capture_output=True, text=True, check=True, env=env, cwd="/tmp",
    ).stdout.strip()
    try:
        wait_http(url)
        return time.monotonic() - t0
    finally:
        subprocess.run(["scancel", out.split(";")[0]], check=False)


def time_spawn(hub: BenchHub, user: str, server: str = "", t0: float | None = None) -> float:
    """POST the server and read its progress stream, as the spawn page does; seconds from `t0`
    (default: the POST) until the hub's "ready" event, which it sends once the proxy routes the
    server. The stream pushes: no polling of the hub's REST API, which would lag and load it."""
    t0 = time.monotonic() if t0 is None else t0
    session = requests.Session()
    session.headers.update(hub.session.headers)
    post = ThreadPoolExecutor(1)
    posted = post.submit(session.post, hub.server_url(user, server), json=OPTIONS)
    url = f"{hub.api}/users/{user}/server{'s/' + server if server else ''}/progress"
    try:
        while True:
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"{user}/{server}: not ready in 300 s\n{hub.log_tail()}")
            with session.get(url, stream=True, timeout=(5, 300)) as r:
                if r.status_code != 200:  # the POST has not begun the spawn yet
                    if posted.done() and posted.result().status_code not in (201, 202):
                        raise RuntimeError(f"spawn {user}/{server}: HTTP {posted.result().status_code} {posted.result().text}")
                    time.sleep(0.01)
                    continue
                for line in r.iter_lines(decode_unicode=True):
                    if line and line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event.get("ready"):
                            return time.monotonic() - t0
                        if event.get("failed"):
                            raise RuntimeError(f"{user}/{server} failed: {event.get('message')}\n{hub.log_tail()}")
    finally:
        post.shutdown(wait=True)
        session.close()


def hub_once(hub: BenchHub, user: str) -> float:
    took = time_spawn(hub, user)
    hub.stop_server(user, timeout=60)
    return took


def storm(hub: BenchHub, size: int) -> list[float]:
    """`size` servers asked for at once; seconds from the common start until each is ready (each
    read from its own progress stream, so a slow POST answer does not delay the reading)."""
    servers = [(USERS[i % len(USERS)], f"s{i // len(USERS) + 1}") for i in range(size)]
    for user in {u for u, _ in servers}:
        hub.ensure_user(user)
    t0 = time.monotonic()
    with ThreadPoolExecutor(size) as pool:
        ready = list(pool.map(lambda s: time_spawn(hub, *s, t0=t0), servers))
    for user, name in servers:
        hub.stop_server(user, name, timeout=120)
    return sorted(ready)


def step_medians(hub: BenchHub) -> dict[str, float]:
    steps: dict[str, list[float]] = {}
    for line in hub.log_path.read_text(errors="replace").splitlines():
        m = STEP_LINE.search(line)
        if m:
            for part in m.group(3).split(", "):
                name, _, value = part.rpartition(" ")[0].rpartition(" ")
                steps.setdefault(name, []).append(float(value))
    return {name: statistics.median(values) for name, values in steps.items()}


def settle(timeout: float = 30) -> None:
    """Until SLURM lists none of this benchmark's jobs: a cancelled server shuts down, its job ends
    and its step is torn down, all CPU work that would otherwise slow the next variant's start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["/usr/bin/squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout.split()
        if not any(name.startswith("carme-bench-") or name in ("bench-batchspawner", FLOOR_JOB) for name in out):
            return
        time.sleep(0.1)


def at_phase(phase: float) -> None:
    """Sleep until `phase` (0..1) seconds past a whole second of the wall clock. slurmctld starts
    new batch jobs at whole seconds (its background loop wakes each second), so a job waits 0 to
    1 s for that depending on when it was submitted: the largest noise of a single spawn. Each
    sample starts every variant at the same phase, and the samples' phases are spread evenly over
    the second: the medians then compare like with like and still average over the phase."""
    time.sleep((phase - time.time()) % 1.0)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="spawns per variant (default 10)")
    parser.add_argument("--storm", type=int, default=12, help="servers asked for at once (default 12, at most 15; 0: none)")
    parser.add_argument("--only", default="", help="comma-separated variants to run (names as printed, e.g. "
                        "'floor, jupyterhub-singleuser;Carme', separated by ';'); default all, and then the "
                        "totals lack what was not run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    totals: dict[str, list[float]] = {}
    storms: dict[str, list[float]] = {}
    steps: dict[str, float] = {}
    carme = BenchHub(slurm_poll_interval=5, ports=(28000, 28081, 28001), job_prefix="carme-bench-")
    baselines = {}
    for name, poll, ports in (("batchspawner (default, poll 0.5 s)", 0.5, (28100, 28181, 28101)),
                              ("batchspawner (fastest, poll 0.05 s)", 0.05, (28200, 28281, 28201))):
        baselines[name] = BaselineHub(30, ports=ports)
        baselines[name].extra_env["BENCH_STARTUP_POLL_INTERVAL"] = str(poll)
    hubs = [carme, *baselines.values()]
    variants = {
        "floor, jupyter-server": lambda u: floor_once(u, False, None),
        "floor, jupyterhub-singleuser": lambda u: floor_once(u, True, carme),
        "Carme": lambda u: hub_once(carme, u),
        **{name: (lambda u, hub=hub: hub_once(hub, u)) for name, hub in baselines.items()},
    }
    if args.only:
        wanted = [n.strip() for n in args.only.split(";")]
        unknown = [n for n in wanted if n not in variants]
        if unknown:
            parser.error(f"--only: no variant {unknown}; there are: {'; '.join(variants)}")
        variants = {n: v for n, v in variants.items() if n in wanted}
        hubs = [carme, *(hub for name, hub in baselines.items() if name in wanted)]
    names = list(variants)
    try:
        cleanup_jobs()
        print("== hubs: Carme (its hub API also serves the singleuser floor) and batchspawner at two settings", flush=True)
        for hub in hubs:
            hub.start()
            for user in USERS:
                hub.ensure_user(user)
        # interleaved: sample i runs every variant once, in an order rotated by i, so a slow
        # minute of the machine falls on all of them alike
        for i in range(args.samples):
            user = USERS[i % len(USERS)]
            phase = (i + 0.5) / args.samples
            for name in names[i % len(names):] + names[:i % len(names)]:
                settle()
                at_phase(phase)
                totals.setdefault(name, []).append(variants[name](user))
            print(f"   sample {i + 1}: " + ", ".join(f"{n.split(' (')[0]} {totals[n][-1]:.2f}" for n in names), flush=True)
        steps = step_medians(carme)
        fastest_name = "batchspawner (fastest, poll 0.05 s)"
        storm_hubs = [("Carme", carme)] + ([(fastest_name, baselines[fastest_name])] if fastest_name in variants else [])
        for name, hub in storm_hubs if args.storm else ():
            storms[name] = storm(hub, args.storm)
            print(f"   storm of {args.storm}, {name}: median {statistics.median(storms[name]):.1f} s", flush=True)
            cleanup_jobs()
    finally:
        for hub in hubs:
            hub.close()
        cleanup_jobs()

    medians = {name: statistics.median(values) for name, values in totals.items()}
    nan = float("nan")
    floor, floor_su = medians.get("floor, jupyter-server", nan), medians.get("floor, jupyterhub-singleuser", nan)
    print(f"\n{'variant':<38}{'median s':>9}{'p95 s':>7}{'min s':>7}{'max s':>7}{'/ floor':>9}{'/ floor su':>11}")
    for name, values in totals.items():
        print(f"{name:<38}{medians[name]:>9.2f}{p95(values):>7.2f}{min(values):>7.2f}{max(values):>7.2f}"
              f"{medians[name] / floor:>9.2f}{medians[name] / floor_su:>11.2f}")
    if "Carme" in medians and fastest_name in medians:
        print(f"\nCarme / batchspawner (fastest): {medians['Carme'] / medians[fastest_name]:.2f}")
    print(f"\nstorm of {args.storm} servers at once, seconds from the start until ready:")
    for name, values in storms.items():
        print(f"  {name:<38} median {statistics.median(values):6.1f}   p95 {p95(values):6.1f}   max {max(values):6.1f}")
    if len(storms) == 2:
        a, b = (statistics.median(v) for v in storms.values())
        print(f"  Carme / batchspawner (fastest): {a / b:.2f}")
    print("\nCarme, median seconds since the request, per step:")
    for name, seconds in steps.items():
        print(f"  {name:<22}{seconds:>7.3f}")
    out = HERE / "results" / f"spawn_latency-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    slurm = subprocess.run(["scontrol", "--version"], capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                               "slurm": slurm, "samples": args.samples, "options": OPTIONS, "totals_s": totals,
                               "medians_s": medians, "carme_steps_median_s": steps,
                               "storm_size": args.storm, "storm_ready_s": storms}, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
