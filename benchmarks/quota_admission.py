"""Quota admission per spawn: Carme's check on the hub's cached view, against asking SLURM every time.

    /opt/carme/venv/bin/python benchmarks/quota_admission.py [--users 1000] [--jobs 10000] [--days 1]
        [--live 300] [--spawns 5000] [--naive-spawns 50] [--no-wait] [--skip-naive]

Carme (as `CarmeSpawner.admit` runs it per spawn): `HubAdmission.usage` (`user_usage` on the
view's live jobs, usage and recent jobs), `effective_limits`, `admit`, for random users and
requests, --spawns times. The view holds --users associations (account carme-dev), --jobs
finished jobs a day for --days days up to now and --live running/pending jobs, generated as SLURM
22.05's `sshare -a -P -o ...` and `sacct -a -X -P -o ...` text (see tests/fixtures/accounting/)
and read with Carme's parsers, whose cost is timed apart (once per accounting interval, not per
spawn). While timing, `commands.run_command` and `subprocess.Popen` count and refuse every call;
the run fails unless both stay at 0. Not timed: the quota store's read of the user's override.

Naive (same run): every spawn runs the real `sshare` and `sacct -S <today 00:00>` (Carme's command
lines: `commands.sshare_usage`, `sacct_jobs_since`, both at once), then the same check,
--naive-spawns times, on this machine's SLURM, whose accounting is far smaller than the synthetic
one: a lower bound. It first waits until no pytest run of the integration/browser tests is active.

Prints p50/p99/max in ms and naive/Carme ratios; writes benchmarks/results/quota_admission-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from carme_quota.admission import admit, user_usage  # noqa: E402
from carme_quota.limits import Limits, effective_limits  # noqa: E402
from carme_slurm import SlurmView, commands  # noqa: E402
from carme_slurm.accounting import SACCT_FIELDS, SSHARE_FIELDS, parse_sacct, parse_sshare  # noqa: E402
from carme_slurm.jobs import SlurmJob  # noqa: E402
from carme_spawner.admission import HubAdmission  # noqa: E402

ACCOUNT, PREFIX, PERIOD = "carme-dev", "carme-", "MONTHLY"
#: carme.example.yaml's default for the role "user"
ROLE_DEFAULT = Limits(max_servers=4, gpus_per_job=2, gpu_hours=200, jobs_per_day=500)
FINISHED = ("COMPLETED", "COMPLETED", "COMPLETED", "CANCELLED by 0", "CANCELLED", "FAILED", "TIMEOUT")
OTHER_NAMES = ("bash", "python", "train.sh", "interactive")
#: a pytest run of the integration or browser tests, or of all of `tests` (make test)
INTEGRATION = r"pytest.*tests/(integration|browser)|pytest.* tests/?( |$)"


def tres(cpu: int, gpu: int) -> str:
    return (f"cpu={cpu},mem={cpu * 1024},energy=0,node={cpu},billing={cpu},fs/disk=0,vmem=0,pages=0,"
            f"gres/gpu={gpu}")


def sshare_text(users: list[str], rng: random.Random) -> str:
    """`sshare -a -P -o Account,User,RawUsage,GrpTRESRaw,TRESRunMins` of 22.05: the tree, indented."""
    rows = [(f"  {ACCOUNT}", u, rng.randrange(0, 500_000), rng.randrange(0, 3000), rng.randrange(0, 14_000),
             rng.choice((0, 0, 0, 60, 240, 960))) for u in users]
    total = [sum(r[i] for r in rows) for i in range(2, 6)]
    sums = f"{total[0]}|{tres(total[1], total[2])}|{tres(total[1], total[3])}"
    lines = ["|".join(SSHARE_FIELDS), f"root||{sums}", f" root|root|0|{tres(0, 0)}|{tres(0, 0)}",
             f" {ACCOUNT}||{sums}"]
    lines += [f"{a}|{u}|{raw}|{tres(cpu, gpu)}|{tres(cpu // 10, run)}" for a, u, raw, cpu, gpu, run in rows]
    return "\n".join(lines) + "\n"


def job_name(user: str, rng: random.Random) -> str:
    return f"{PREFIX}{user}" if rng.random() < 0.9 else rng.choice(OTHER_NAMES)


def live_jobs(users: list[str], n: int, first_id: int, now: datetime, rng: random.Random) -> list[SlurmJob]:
    """The live table (squeue): running and pending jobs, submitted today."""
    jobs, midnight = [], now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    for i in range(n):
        user, running = rng.choice(users), rng.random() < 0.7
        submit = int(rng.uniform(midnight, now.timestamp()))
        jobs.append(SlurmJob(
            job_id=str(first_id + i), name=job_name(user, rng), user=user,
            state="RUNNING" if running else "PENDING", reason="None" if running else "Priority",
            partition="interactive", nodes="node1" if running else "", batch_host="node1" if running else "",
            comment=f"carme:{user}/", submit_time=submit,
            start_time=submit + 2 if running else 0, end_time=submit + 28_800, time_limit_minutes=480,
            exit_status=None, exit_signal=None, output_path="/dev/null", account=ACCOUNT,
            gpus=rng.choice((0, 0, 1, 2))))
    return jobs


def alloc_tres(cpus: int, gpus: int) -> str:
    return f"billing={cpus},cpu={cpus}," + (f"gres/gpu={gpus}," if gpus else "") + f"mem={cpus}G,node=1"


def sacct_text(users: list[str], n: int, days: int, live: list[SlurmJob], now: datetime,
               rng: random.Random) -> str:
    """`sacct -a -X -P -o <SACCT_FIELDS>` of 22.05: `n` finished jobs a day for `days` days up to
    now, then the live ones (End, and Start while pending, "Unknown"). Columns in Carme's order."""
    midnight, fmt = now.replace(hour=0, minute=0, second=0, microsecond=0), "%Y-%m-%dT%H:%M:%S"
    today = max((now - midnight).total_seconds() - 300, 1)  # every end before now

    def row(**values: str) -> str:  # a KeyError here: Carme reads a column this benchmark does not write
        return "|".join(values[f] for f in SACCT_FIELDS)

    lines = ["|".join(SACCT_FIELDS)]
    submits = sorted(midnight - timedelta(days=d, seconds=-rng.uniform(0, today if d == 0 else 86_100))
                     for d in range(days) for _ in range(n))
    for i, submit in enumerate(submits):
        user = rng.choice(users)
        start = submit + timedelta(seconds=rng.randrange(0, 30))
        end = start + timedelta(seconds=rng.randrange(1, 120))
        lines.append(row(JobID=str(i + 1), User=user, Account=ACCOUNT, JobName=job_name(user, rng),
                         Submit=f"{submit:{fmt}}", Start=f"{start:{fmt}}", End=f"{end:{fmt}}",
                         State=rng.choice(FINISHED),
                         AllocTRES=alloc_tres(rng.choice((1, 2, 4)), rng.choice((0, 1, 2))),
                         ElapsedRaw=str((end - start).seconds), ExitCode="0:0", NodeList="carme-n1"))
    for j in live:
        start = datetime.fromtimestamp(j.start_time) if j.start_time else None
        lines.append(row(JobID=j.job_id, User=j.user, Account=ACCOUNT, JobName=j.name,
                         Submit=f"{datetime.fromtimestamp(j.submit_time):{fmt}}",
                         Start=f"{start:{fmt}}" if start else "Unknown", End="Unknown", State=j.state,
                         AllocTRES=alloc_tres(1, j.gpus) if start else "",
                         ElapsedRaw=str(int((now - start).total_seconds())) if start else "0", ExitCode="0:0",
                         NodeList=j.nodes or "None assigned"))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def no_slurm():
    """Every SLURM command (run_command) and every process (subprocess.Popen) counted, and refused."""
    calls = {"run_command": 0, "Popen": 0}

    async def refuse_command(argv, **_):
        calls["run_command"] += 1
        raise AssertionError(f"SLURM call in the admission path: {argv}")

    def refuse_popen(argv, *_, **__):
        calls["Popen"] += 1
        raise AssertionError(f"process started in the admission path: {argv}")

    saved = commands.run_command, subprocess.Popen
    commands.run_command, subprocess.Popen = refuse_command, refuse_popen
    try:
        yield calls
    finally:
        commands.run_command, subprocess.Popen = saved


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": q[98], "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms)}


def line(name: str, s: dict[str, float]) -> str:
    return f"  {name:<34}{s['n']:>7}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['max_ms']:>10.3f}"


def request(rng: random.Random) -> tuple[int, int]:
    return rng.choice((0, 0, 1, 1, 2, 4)), rng.choice((60, 120, 240, 480, 720))


def wait_for_integration() -> None:
    while subprocess.run(["pgrep", "-f", INTEGRATION], capture_output=True, check=False).stdout.strip():
        print("   waiting: a pytest run of the integration or browser tests is active; again in 10 s",
              flush=True)
        time.sleep(10)


async def naive(spawns: int, live: dict[str, SlurmJob], rng: random.Random) -> tuple[list[float], dict]:
    """Per spawn: the real sshare and sacct (Carme's command lines, both at once), then the same check."""
    usage = await commands.sshare_usage()  # not timed: which users the real accounting knows
    users = sorted({u.user for u in usage if u.account == ACCOUNT and u.user}) or ["root"]
    times, sizes = [], {}
    for _ in range(spawns):
        user, (gpus, runtime) = rng.choice(users), request(rng)
        t0 = time.perf_counter()
        now = datetime.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        usage, todays = await asyncio.gather(commands.sshare_usage(), commands.sacct_jobs_since(midnight))
        use = user_usage(user, ACCOUNT, live.values(), {u.key: u for u in usage}, todays, PREFIX, PERIOD, now)
        admit(gpus, runtime, effective_limits(ROLE_DEFAULT), use)
        times.append((time.perf_counter() - t0) * 1000)
        sizes = {"sshare_lines": len(usage), "sacct_jobs": len(todays), "users": len(users)}
    return times, sizes


def build_view(args, rng: random.Random, now: datetime) -> tuple[SlurmView, list[str], dict]:
    """The hub's view with the synthetic snapshot, parsed as the view parses it (timed, 5 times)."""
    users = [f"user{i:04d}" for i in range(1, args.users + 1)]
    live = live_jobs(users, args.live, args.jobs * args.days + 1, now, rng)
    share, acct = sshare_text(users, rng), sacct_text(users, args.jobs, args.days, live, now, rng)
    parse_ms = []
    for _ in range(5):  # what the view does once per accounting interval: parse and key both outputs
        t0 = time.perf_counter()
        usage = {u.key: u for u in parse_sshare(share)}
        todays = {j.job_id: j for j in parse_sacct(acct)}
        parse_ms.append((time.perf_counter() - t0) * 1000)
    view = SlurmView(job_name_prefix=PREFIX)  # never started: its reflectors hold the snapshot built here
    # as the watch takes a snapshot: set_items keys and groups them (by user) once per interval
    view.usage.set_items(usage.values())
    view.recent_jobs.set_items(todays.values())
    view.jobs.set_items(live)
    view.jobs.snapshot_started = view.usage.snapshot_started = view.recent_jobs.snapshot_started = time.time()
    snapshot = {"associations": len(usage), "accounted_jobs": len(todays), "live_jobs": len(live),
                "sshare_bytes": len(share), "sacct_bytes": len(acct), "parse_ms": parse_ms,
                "parse_median_ms": statistics.median(parse_ms)}
    return view, users, snapshot


def time_carme(view: SlurmView, users: list[str], spawns: int, rng: random.Random) -> tuple[list, dict]:
    """`spawns` admissions as `CarmeSpawner.admit` makes them, with SLURM (and any process) refused."""
    overrides = {u: Limits(gpu_hours=1000, max_servers=8) for u in rng.sample(users, len(users) // 10)}
    hub, times, outcomes = HubAdmission(), [], Counter()
    with no_slurm() as calls:
        for probe in (lambda: asyncio.run(commands.sshare_usage()),
                      lambda: subprocess.run(["squeue"], check=False)):
            with contextlib.suppress(AssertionError):
                probe()
        assert calls == {"run_command": 1, "Popen": 1}, f"the guard does not catch SLURM calls: {calls}"
        calls.update(run_command=0, Popen=0)
        for _ in range(spawns):
            user, (gpus, runtime) = rng.choice(users), request(rng)
            t0 = time.perf_counter()
            use = hub.usage(view, user, ACCOUNT, PREFIX, PERIOD)
            refusal = admit(gpus, runtime, effective_limits(ROLE_DEFAULT, None, overrides.get(user)), use)
            times.append((time.perf_counter() - t0) * 1000)
            outcomes[refusal.limit if refusal else "admitted"] += 1
        seen = dict(calls)
    assert seen == {"run_command": 0, "Popen": 0}, f"SLURM called during Carme's admission: {seen}"
    return times, {"outcomes": dict(outcomes), "slurm_calls": seen["run_command"], "processes": seen["Popen"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="users in the snapshot (default 1000)")
    parser.add_argument("--jobs", type=int, default=10_000, help="finished jobs a day in it (default 10000)")
    parser.add_argument("--days", type=int, default=1,
                        help="days of jobs in the view's sacct snapshot, --jobs a day (default 1: today)")
    parser.add_argument("--live", type=int, default=300, help="running/pending jobs (default 300)")
    parser.add_argument("--spawns", type=int, default=5000, help="Carme admissions timed (default 5000)")
    parser.add_argument("--naive-spawns", type=int, default=50, help="naive admissions timed (default 50)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for integration runs to end")
    parser.add_argument("--skip-naive", action="store_true", help="time Carme only (no SLURM call at all)")
    args = parser.parse_args()
    rng, now = random.Random(args.seed), datetime.now()
    view, users, snap = build_view(args, rng, now)
    print(f"== snapshot: {snap['associations']} associations ({snap['sshare_bytes'] // 1024} KiB of sshare), "
          f"{snap['accounted_jobs']} jobs ({snap['sacct_bytes'] // 1024} KiB of sacct), "
          f"{snap['live_jobs']} live jobs; parse: median {snap['parse_median_ms']:.1f} ms of 5 "
          "(once per accounting interval)", flush=True)
    carme_ms, checked = time_carme(view, users, args.spawns, rng)
    carme = summary(carme_ms)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(checked["outcomes"].items()))
    print(f"== Carme: {args.spawns} admissions ({outcomes}); SLURM calls {checked['slurm_calls']}, "
          f"processes started {checked['processes']}", flush=True)
    naive_ms, real = [], {}
    if not args.skip_naive:
        if not args.no_wait:
            wait_for_integration()
        print(f"== naive: {args.naive_spawns} admissions, each running sshare + sacct on this machine's "
              "SLURM", flush=True)
        naive_ms, real = asyncio.run(naive(args.naive_spawns, view.jobs.items, rng))

    print(f"\n  {'ms per admission':<34}{'n':>7}{'p50':>10}{'p99':>10}{'max':>10}")
    print(line(f"Carme ({args.users} users, {args.jobs * args.days}+{args.live} jobs)", carme))
    version = subprocess.run(["scontrol", "--version"], capture_output=True, text=True, check=False)
    version = version.stdout.strip()
    result = {"date": now.isoformat(timespec="seconds"), "host": platform.node(), "slurm": version,
              "args": vars(args), "snapshot": snap, "carme": {**carme, **checked},
              "carme_target_p99_ms": 5.0, "carme_p99_ok": carme["p99_ms"] < 5.0}
    if naive_ms:
        n = summary(naive_ms)
        ratios = {"ratio_p50": n["p50_ms"] / carme["p50_ms"], "ratio_p99": n["p99_ms"] / carme["p99_ms"]}
        print(line(f"naive (real: {real['sshare_lines']} assocs, {real['sacct_jobs']} jobs)", n))
        print(f"\n  naive / Carme: p50 {ratios['ratio_p50']:.0f} x, p99 {ratios['ratio_p99']:.0f} x")
        print(f"  naive ran on this machine's real accounting ({real['sshare_lines']} sshare lines, "
              f"{real['sacct_jobs']} jobs today), not on {snap['associations']} and "
              f"{snap['accounted_jobs']}: a lower bound, it only grows with a bigger accounting database")
        result["naive"] = {**n, **ratios, "real_accounting": real, "samples_ms": naive_ms}
    if args.days < (window := view.accounting_window_days):
        print(f"\n  note: the hub's view holds SlurmView.accounting_window_days = {window} days of jobs, "
              f"this run {args.days}; --days {window} measures that")
    verdict = "within" if result["carme_p99_ok"] else "OVER"
    print(f"\n  Carme p99 {carme['p99_ms']:.3f} ms: {verdict} the 5 ms target; parsing the snapshot "
          f"{snap['parse_median_ms']:.1f} ms (median), once per accounting interval, not per spawn")
    out = HERE / "results" / f"quota_admission-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(REPO)}")
    return 0 if result["carme_p99_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
