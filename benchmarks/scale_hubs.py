"""What benchmarks/controller_load.py and spawn_storm.py share: their hubs, slurmctld's own RPC counts
(`sdiag`), many servers at once over the REST API, and a clean-up that touches only their own jobs.

Hubs (one at a time: `sdiag` counts the whole controller):
  ScaleCarmeHub     Carme's hub (jupyterhub_config.py + carme.example.yaml, via tests/integration/hub.py)
                    with every service a site runs beside it that can run on the dev cluster: catalog,
                    quota (on in Hub.env()), reconcile, reservations, culler, sessions, cockpit,
                    announcements; CarmeSpawner.cmd = the tiny single-user STAND-IN
  ScaleBaselineHub  plain batchspawner 1.3.0 (scale_baseline_config.py over
                    baseline_jupyterhub_config.py), the same stand-in behind batchspawner-singleuser
  ScaleFloorHub     JupyterHub alone (scale_floor_config.py): the baseline's hub with a spawner that only
                    waits (spawn_storm.py's floor of the hub's API latency; no SLURM job)
All three have squeue_load.py's counting squeue wrapper first on their PATH.
"""

from __future__ import annotations

import json
import platform
import pwd
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.squeue_load import BaselineHub, BenchHub  # noqa: E402
from tests.integration.hub import REPO  # noqa: E402

TINY = "/opt/carme/standins/tiny-singleuser"
OPTIONS = {"gpus": 0, "image": "python-cpu"}  # 1 CPU, 1024 MiB, partition interactive (both spawners)
LOAD_USERS = tuple(f"load{i:02d}" for i in range(1, 51))  # dev/cluster.sh: unix users + SLURM associations
MAX_SERVERS_PER_USER = 4  # carme.example.yaml's role "user" max_servers = the associations' MaxJobs/MaxSubmitJobs
SETTINGS = yaml.safe_load((REPO / "carme.example.yaml").read_text())
EXAMPLE = SETTINGS["carme"]  # the services' settings a site starts from
EXAMPLE_JOB_INTERVAL = float(SETTINGS["SlurmView"]["job_interval"])  # Carme's watch: 5 s


STARTED = time.monotonic()


def progress(message: str) -> None:
    """A progress line with the seconds since the benchmark began."""
    print(f"[{time.monotonic() - STARTED:5.0f} s] {message}", flush=True)


# ---- the hubs ------------------------------------------------------------------------------------
class ScaleCarmeHub(BenchHub):
    """Carme's hub with its services, on `public` .. `public` + 10 (+81: the hub), job names `job_prefix`*."""

    def __init__(self, public: int, job_prefix: str, hub_port: int, extra_env: dict[str, str] | None = None):
        def url(offset: int) -> str:
            return f"http://127.0.0.1:{public + offset}"

        # the example's settings (a site's), each on this hub's own port; +2 catalog and +4 quota come from Hub.env()
        services = {
            "reconcile": {"policy": "report", "interval": 300, "grace": 120, "url": url(3)},
            "reservations": {**EXAMPLE["reservations"], "url": url(5), "name_prefix": "carme-benchr"},
            "cockpit": {**EXAMPLE["cockpit"], "url": url(7)},
            "sessions": {**EXAMPLE["sessions"], "url": url(8)},
            "culler": {**EXAMPLE["culler"], "url": url(9)},
            "announcements": {"url": url(10)},
        }
        self.service_urls = [url(2), url(4), *(s["url"] for s in services.values())]
        env = {f"CARME__carme__{name}": json.dumps(value) for name, value in services.items()}
        env["CARME__CarmeSpawner__cmd"] = json.dumps([TINY])
        env["CARME__Authenticator__admin_users"] = json.dumps(["admin"])
        env.update(extra_env or {})
        super().__init__(slurm_poll_interval=EXAMPLE_JOB_INTERVAL, ports=(public, hub_port, public + 1),
                         job_prefix=job_prefix, extra_env=env)

    @property
    def ports(self) -> tuple[int, ...]:
        return (*super().ports, self.public_port + 10)  # announcements

    def start(self, timeout: float = 90) -> None:
        super().start(timeout)
        wait_answering(self.service_urls, self)


#: how the baseline's server reports its port: batchspawner-singleuser's report done by the stand-in itself
#: (standard library, as cheap as Carme's launcher), or the real batchspawner-singleuser (~100 MB per server)
WRAPPERS = {"standin": ("", [TINY, "--report-port-to-batchspawner"]),
            "real": ("/opt/carme/venv/bin/batchspawner-singleuser", [TINY])}


def check_wrapper(wrapper: str) -> None:
    """The installed stand-in must know the flag (an older one crashes on it; batchspawner then waits for
    the port until start_timeout)."""
    flag = WRAPPERS[wrapper][1][1:]
    if flag and flag[0] not in Path(TINY).read_text():
        raise SystemExit(f"{TINY} has no {flag[0]}: install dev/standins/tiny-singleuser (make install), "
                         "or use --batchspawner-wrapper real")


class ScaleBaselineHub(BaselineHub):
    """batchspawner 1.3.0 with the stand-in; job names `job_name`, output /tmp/`job_name`-<user>-<id>.log."""

    config_file = HERE / "scale_baseline_config.py"

    def __init__(self, poll_interval: int, public: int, hub_port: int, job_name: str, users: tuple[str, ...],
                 wrapper: str = "standin"):
        super().__init__(poll_interval, ports=(public, hub_port, public + 1))
        self.job_name = job_name
        check_wrapper(wrapper)
        wrapper_cmd, server_cmd = WRAPPERS[wrapper]
        self.extra_env.update(BENCH_JOB_NAME=job_name, BENCH_USERS=json.dumps(list(users)),
                              BENCH_SERVER_CMD=json.dumps(server_cmd), BENCH_SINGLEUSER_WRAPPER=wrapper_cmd)


class ScaleFloorHub(ScaleBaselineHub):
    """JupyterHub alone (scale_floor_config.py): the baseline's hub with a spawner that only waits `delays`
    ({user: seconds}) and points every server at one shared responder on `responder_port` (a plain
    http.server this hub starts and stops). No SLURM job."""

    config_file = HERE / "scale_floor_config.py"

    def __init__(self, public: int, hub_port: int, responder_port: int, users: tuple[str, ...], delays: dict):
        super().__init__(30, public, hub_port, job_name="bench-floor-none", users=users)
        self.responder_port, self.responder = responder_port, None
        self.extra_env.update(BENCH_FLOOR_DELAYS=json.dumps(delays),
                              BENCH_FLOOR_SERVER_URL=f"http://127.0.0.1:{responder_port}")

    def start(self, timeout: float = 90) -> None:
        super().start(timeout)  # first: it frees this hub's ports, the responder's among them
        empty = self.workdir / "responder"
        empty.mkdir(parents=True, exist_ok=True)
        self.responder = subprocess.Popen([sys.executable, "-m", "http.server", str(self.responder_port), "--bind",
                                           "127.0.0.1", "--directory", str(empty)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.responder and self.responder.poll() is None:
                self.responder.terminate()
                self.responder.wait(10)


def wait_answering(urls: list[str], hub, timeout: float = 60) -> None:
    """Until each service answers HTTP at all (its start-up is then behind it)."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                requests.get(url, timeout=2, allow_redirects=False)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service {url} did not answer in {timeout} s\n{hub.log_tail()}") from None
                time.sleep(0.3)


# ---- slurmctld's RPC counts -------------------------------------------------------------------------
RPC_LINE = re.compile(r"^\s+(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)\s+ave_time:(\d+)\s+total_time:(\d+)")
KIND = {"REQUEST_JOB_INFO": "job", "REQUEST_JOB_INFO_SINGLE": "job", "REQUEST_JOB_USER_INFO": "job",
        "REQUEST_NODE_INFO": "node", "REQUEST_NODE_INFO_SINGLE": "node", "REQUEST_PARTITION_INFO": "partition",
        "REQUEST_RESERVATION_INFO": "reservation"}
KINDS = ("job", "node", "partition", "reservation", "other")
SDIAG_OWN = "REQUEST_STATS_INFO"  # sdiag's own read (as root)


def is_query(message_type: str) -> bool:
    """A request that reads the controller's state (squeue, sinfo, scontrol show, sshare, ...)."""
    return (message_type.startswith("REQUEST_") and "_INFO" in message_type and message_type != SDIAG_OWN) \
        or message_type == "REQUEST_PRIORITY_FACTORS"


@dataclass
class RpcCounts:
    """One `sdiag` read since the last `sdiag -r`: counts by message type and by user, over `seconds`."""
    seconds: float
    by_type: dict[str, int] = field(default_factory=dict)
    by_user: dict[str, int] = field(default_factory=dict)
    total_time_us: dict[str, int] = field(default_factory=dict)
    reset_inside: bool = False  # slurmctld's statistics were reset during the window (see Sdiag)

    @property
    def queries(self) -> int:
        return sum(n for t, n in self.by_type.items() if is_query(t))

    @property
    def all_rpcs(self) -> int:
        return sum(n for t, n in self.by_type.items() if t != SDIAG_OWN)

    def kinds(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for t, n in self.by_type.items():
            if is_query(t):
                out[KIND.get(t, "other")] += n
        return out

    def per_minute(self, count: float) -> float:
        return count * 60 / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        users = dict(self.by_user)
        if "root" in users:  # sdiag's own read is root's
            users["root"] -= self.by_type.get(SDIAG_OWN, 0)
        return {"seconds": round(self.seconds, 2), "reset_inside": self.reset_inside, "query_rpcs": self.queries,
                "query_rpcs_per_min": round(self.per_minute(self.queries), 2),
                "query_kinds": self.kinds(), "all_rpcs": self.all_rpcs,
                "query_seconds_in_controller": round(sum(us for t, us in self.total_time_us.items() if is_query(t)) / 1e6, 4),
                "by_type": dict(sorted(self.by_type.items(), key=lambda kv: -kv[1])),
                "by_user": {u: n for u, n in sorted(users.items(), key=lambda kv: -kv[1]) if n}}


class Sdiag:
    """`sdiag -r` now; `read()` later: what slurmctld served in between (every client, not only the hub).
    A controller that restarts (or another `sdiag -r`) in between resets the counts: `read()` marks that
    window `reset_inside` (its counts cover only the time since)."""

    def reset(self) -> None:
        sdiag(["-r"])
        self.began, self.began_wall = time.monotonic(), time.time()

    def read(self) -> RpcCounts:
        out = sdiag([])
        counts = RpcCounts(seconds=time.monotonic() - self.began)
        section = None
        for line in out.splitlines():
            if line.startswith("Data since") and (m := re.search(r"\((\d+)\)", line)):
                counts.reset_inside = int(m.group(1)) > self.began_wall + 2
            if line.startswith("Remote Procedure Call statistics by message type"):
                section = counts.by_type
            elif line.startswith("Remote Procedure Call statistics by user"):
                section = counts.by_user
            elif line and not line[0].isspace():
                section = None
            elif section is not None and (m := RPC_LINE.match(line)):
                section[m.group(1)] = int(m.group(3))
                if section is counts.by_type:
                    counts.total_time_us[m.group(1)] = int(m.group(5))
        if counts.reset_inside:
            print("   warning: slurmctld's statistics were reset during the window (a restart or another "
                  "`sdiag -r`): these counts cover only part of it", file=sys.stderr, flush=True)
        return counts


def sdiag(argv: list[str], patience: float = 90) -> str:
    """Run sdiag; a controller that does not answer (restarting) is asked again for `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        done = subprocess.run(["sdiag", *argv], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            raise RuntimeError(f"sdiag {' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        time.sleep(2)


def quiet_check(seconds: float) -> dict | None:
    """Query RPCs with no benchmark hub running: anything but 0 means someone else uses the controller."""
    if seconds <= 0:
        return None
    sdiag = Sdiag()
    sdiag.reset()
    time.sleep(seconds)
    counts = sdiag.read().summary()
    note = "quiet" if not counts["query_rpcs"] else "NOT QUIET: other clients query slurmctld; the counts below include them"
    progress(f"controller with no benchmark hub, {seconds:.0f} s: {counts['query_rpcs']} query RPCs "
             f"({counts['query_rpcs_per_min']:.1f}/min), by user {counts['by_user']}: {note}")
    return counts


# ---- many servers over the REST API ------------------------------------------------------------------
def new_session(hub) -> requests.Session:
    """One requests.Session per thread, with the harness token."""
    session = requests.Session()
    session.headers.update(hub.session.headers)
    return session


def all_servers(hub, session: requests.Session | None = None) -> dict[tuple[str, str], dict]:
    """{(user, server name): model} of every server the hub has, stopped ones included (paged)."""
    session = session or hub.session
    servers, offset = {}, 0
    while True:
        r = session.get(f"{hub.api}/users", params={"include_stopped_servers": "1", "limit": 200, "offset": offset},
                        timeout=60)
        r.raise_for_status()
        page = r.json()
        for user in page:
            for name, model in (user.get("servers") or {}).items():
                servers[(user["name"], name)] = model
        if not page:
            return servers
        offset += len(page)


def ensure_users(hub, users) -> None:
    existing = set()
    offset = 0
    while True:
        page = hub.session.get(f"{hub.api}/users", params={"limit": 200, "offset": offset}, timeout=60).json()
        existing |= {u["name"] for u in page}
        if not page:
            break
        offset += len(page)
    missing = [u for u in users if u not in existing]
    if missing:
        hub.session.post(f"{hub.api}/users", json={"usernames": missing}, timeout=60).raise_for_status()


def use_a_hub_made_token(hub) -> None:
    """From here on the benchmark's clients (its sessions, the API probe) use a token the hub made for its
    admin user, as a site's scripts and users do. The harness's own token comes from the hub's config,
    and JupyterHub hashes such tokens 16384 times on every request (3 ms of the hub's loop each, tokens
    it made itself once): 50 clients and a probe on it would load both hubs with work no site has."""
    hub.ensure_user("admin")
    r = hub.session.post(f"{hub.api}/users/admin/tokens", json={"note": "benchmark clients", "expires_in": 3600},
                         timeout=60)
    r.raise_for_status()
    hub.token = r.json()["token"]
    hub.session.headers["Authorization"] = f"token {hub.token}"


def message_of(r: requests.Response) -> str:
    try:
        return str(r.json().get("message") or "")
    except ValueError:
        return r.text[:300]


def stop_all(hub, servers, timeout: float = 180) -> list[str]:
    """DELETE every server (50 at a time), then wait until the hub has none running or pending; problems."""
    problems = []

    def delete(server):
        session = new_session(hub)
        try:
            r = session.delete(hub.server_url(*server), timeout=60)
            if r.status_code not in (202, 204, 404):
                problems.append(f"{server}: DELETE HTTP {r.status_code} {message_of(r)}")
        except requests.RequestException as e:
            problems.append(f"{server}: DELETE {e}")
        finally:
            session.close()

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(delete, servers))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [s for s, m in all_servers(hub).items() if m.get("ready") or m.get("pending")]
        if not live:
            return problems
        time.sleep(1)
    return [*problems, f"still running or pending after {timeout:.0f} s: {live[:10]}"]


# ---- this benchmark's jobs only ------------------------------------------------------------------------
def own_jobs(names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """{job id: (name, user)} of jobs whose name starts with one of `names` (never anyone else's)."""
    out = subprocess.run(["/usr/bin/squeue", "-h", "-o", "%i %j %u"], capture_output=True, text=True).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith(names):
            jobs[parts[0]] = (parts[1], parts[2])
    return jobs


def other_jobs_of(users) -> list[str]:
    """Jobs of `users` that are not this benchmark's: they count against the users' MaxJobs."""
    out = subprocess.run(["/usr/bin/squeue", "-h", "-o", "%i %j %u", "-u", ",".join(users)], capture_output=True,
                         text=True).stdout
    return out.splitlines()


class JobJanitor:
    """Remembers this run's jobs (so their output files can go) and cancels only them."""

    def __init__(self, carme_prefix: str, baseline_name: str):
        self.carme_prefix, self.baseline_name = carme_prefix, baseline_name
        self.seen: dict[str, tuple[str, str]] = {}

    def note(self) -> dict[str, tuple[str, str]]:
        jobs = own_jobs((self.carme_prefix, self.baseline_name))
        self.seen.update(jobs)
        return jobs

    def cancel(self, wait: float = 60) -> None:
        jobs = self.note()
        if jobs:
            subprocess.run(["scancel", *jobs], check=False)
        deadline = time.monotonic() + wait
        while own_jobs((self.carme_prefix, self.baseline_name)) and time.monotonic() < deadline:
            time.sleep(1)

    def remove_outputs(self) -> None:
        for job_id, (name, user) in self.seen.items():
            if name.startswith(self.carme_prefix):
                try:
                    home = pwd.getpwnam(user).pw_dir
                except KeyError:
                    continue
                Path(home, ".carme", "jobs", f"carme-{job_id}.log").unlink(missing_ok=True)
        for path in Path("/tmp").glob(f"{self.baseline_name}-*.log"):
            path.unlink(missing_ok=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a (baseline 0)"


def run_variants(variants, users, janitor: "JobJanitor", quiet_window: float, run_one, who: str) -> tuple[list, dict | None]:
    """Each (name, make_hub) of `variants` through `run_one(name, hub)` (a list of result rows), after a
    clean-up of an interrupted run and the quiet check; this benchmark's jobs cancelled whatever happens.
    (rows, the quiet check)."""
    others = other_jobs_of(users)
    if others:
        print(f"warning: {len(others)} other jobs of {who} (they hold MaxJobs slots and query too):\n  "
              + "\n  ".join(others[:10]), flush=True)
    rows = []
    try:
        janitor.cancel()  # leftovers of an interrupted run of this benchmark
        quiet = quiet_check(quiet_window)
        for name, make_hub in variants:
            rows.extend(run_one(name, make_hub()))
    finally:
        janitor.cancel()
        janitor.remove_outputs()
    return rows, quiet


def write_results(name: str, took: float, fields: dict) -> None:
    """benchmarks/results/<name>-<date>.json: the date, host and SLURM release, `fields`, the run's seconds."""
    slurm = subprocess.run(["scontrol", "--version"], capture_output=True, text=True).stdout.strip()
    out = REPO / "benchmarks" / "results" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                               "slurm": slurm, **fields, "run_s": round(took, 1)}, indent=2) + "\n")
    print(f"results: {out.relative_to(REPO)}")
