"""Issue 24, resilience, on the real hub (its database on PostgreSQL), SLURM and the proxy: a hub restart
with 20 servers running keeps all 20 (the same jobs, reachable, none orphaned, none submitted again);
slurmctld stopped and started again during a 20-user spawn storm leaves every job with a hub server and
every hub server with a job, and every user ready or told why; a node whose slurmd dies takes its
servers down with "node failure" in plain words once SLURM says so (accounting closed: NODE_FAIL with an
end); a start that hangs fails at start_timeout with the job's log tail and its job cancelled.

The servers are the tiny single-user STAND-IN (dev/standins/tiny-singleuser: the hub's protocol only,
~15 MB each) behind the product's own spawner, launcher, batch script and container command line, so
the 2-core machine runs forty of them. Marked `faults` (tests/conftest.py runs it after everything
else): it stops slurmctld and kills a slurmd.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from . import slurm_probe
from .conftest import REPO, running_hub
from .postgres import postgres_url
from .waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PUBLIC = 21100
TINY = "/opt/carme/standins/tiny-singleuser"
CPU = {"gpus": 0, "image": "python-cpu", "runtime": 30}
PREFIX = "carme-resil-"
STATE = Path("/var/lib/carme-dev")
FIRST = [f"load{i:02d}" for i in range(1, 21)]  # the hub restart
STORM = [f"load{i:02d}" for i in range(21, 41)]  # slurmctld's restart
NODE = [f"load{i:02d}" for i in range(41, 47)]  # the node failure


@pytest.fixture(scope="module")
def hub_db():
    """A fresh schema of the development PostgreSQL for the hub's own database (JupyterHub.db_url)."""
    url = postgres_url()
    schema = f"hub_resilience_{secrets.token_hex(4)}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    hub_url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield hub_url, schema, engine
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="module")
def hub(cluster, hub_db):
    db_url, _schema, _engine = hub_db
    env = {"CARME__JupyterHub__db_url": db_url.render_as_string(hide_password=False),
           "CARME__CarmeSpawner__cmd": json.dumps([TINY])}
    with running_hub(extra_env=env, ports=(PUBLIC, PUBLIC + 81, PUBLIC + 1), job_prefix=PREFIX) as hub:
        yield hub
        for user in FIRST + STORM + NODE:  # running_hub stops the usual test users' servers only
            hub.session.delete(hub.server_url(user), timeout=30)


def start_all(hub, users: list[str]) -> None:
    for user in users:
        r = hub.start_server(user, CPU)
        assert r.status_code in (201, 202), (user, r.text)


def users_models(hub, users: list[str]) -> dict[str, dict]:
    """{user: the default server's model, {} when none} for each of `users`, in one API call per 200."""
    r = hub.session.get(f"{hub.api}/users", params={"include_stopped_servers": "1", "limit": 500}, timeout=30)
    r.raise_for_status()
    found = {u["name"]: (u.get("servers") or {}).get("", {}) for u in r.json()}
    return {user: found.get(user, {}) for user in users}


def wait_settled(hub, users: list[str], timeout: float) -> dict[str, dict]:
    """Until none of `users`' servers is pending; their models."""
    def settled():
        models = users_models(hub, users)
        return models if not any(m.get("pending") for m in models.values()) else None
    models = wait_until(settled, timeout, interval=2)
    assert models, {u: m.get("pending") for u, m in users_models(hub, users).items()}
    return models


def prefixed_jobs(users: list[str]) -> dict[str, str]:
    """{job id: state} of this module's jobs of `users` in squeue."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%u"], capture_output=True, text=True, check=True).stdout
    return {i: s for i, j, s, u in (line.split("|") for line in out.splitlines()) if j.startswith(PREFIX) and u in users}


def stop_servers(hub, users: list[str]) -> None:
    for user in users:
        hub.session.delete(hub.server_url(user), timeout=30)
    assert wait_until(lambda: not prefixed_jobs(users), 90), prefixed_jobs(users)


def submitted_since(t0: float) -> list[str]:
    """This module's job ids sacct has, submitted since `t0` (epoch s). slurmdbd learns of a job a
    moment after squeue shows it: wait for what squeue showed before comparing."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0))
    out = subprocess.run(["sacct", "-a", "-X", "-n", "-P", "-S", start, "-o", "JobID,JobName,Submit"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.split("|")[1].startswith(PREFIX)]


def reachable(hub, user: str, token: str) -> bool:
    r = requests.get(f"{hub.url}/user/{user}/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    return r.status_code == 200 and "started" in r.json()


def spawn_words(hub, user: str) -> str:
    """What the user is told about a spawn that did not become ready (its progress stream's failure)."""
    events = hub.progress_events(user, timeout=10)
    return " ".join(e.get("message", "") for e in events if e.get("failed")) or json.dumps(events)[-500:]


def test_a_hub_restart_keeps_20_servers_their_jobs_and_submits_nothing(hub, hub_db):
    _url, schema, engine = hub_db
    t0 = time.time()
    try:
        restart_with_20_servers(hub, FIRST, t0, schema, engine)
    finally:
        stop_servers(hub, FIRST)  # make room for the storm, whatever happened


def restart_with_20_servers(hub, users: list[str], t0: float, schema: str, engine) -> None:
    start_all(hub, users)
    models = wait_settled(hub, users, 240)
    assert all(m.get("ready") for m in models.values()), {u: m for u, m in models.items() if not m.get("ready")}
    jobs = {u: str(m["state"]["job_id"]) for u, m in models.items()}
    assert len(set(jobs.values())) == 20 and set(jobs.values()) == set(prefixed_jobs(users)), \
        (jobs, prefixed_jobs(users))
    tokens = {u: hub.user_token(u) for u in users}
    assert wait_until(lambda: sorted(submitted_since(t0)) == sorted(jobs.values()), 60), submitted_since(t0)
    before = submitted_since(t0)
    # the hub's own database is PostgreSQL: its servers are rows there
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f'SELECT count(*) FROM "{schema}".spawners WHERE server_id IS NOT NULL'))
        assert rows.scalar() >= 20

    hub.restart()

    models = wait_settled(hub, users, 120)
    assert all(m.get("ready") for m in models.values()), {u: m for u, m in models.items() if not m.get("ready")}
    assert {u: str(m["state"]["job_id"]) for u, m in models.items()} == jobs  # the same jobs
    unreachable = [u for u in users if not reachable(hub, u, tokens[u])]
    assert not unreachable, (unreachable, hub.log_tail())
    assert set(prefixed_jobs(users)) == set(jobs.values())  # none orphaned, none lost
    time.sleep(3)  # a submission the restart had caused would reach slurmdbd within this
    assert sorted(submitted_since(t0)) == sorted(before)  # nothing was submitted again
    assert all(s == "RUNNING" for s in prefixed_jobs(users).values())


def slurmctld_pid() -> int | None:
    try:
        pid = int((STATE / "run" / "slurmctld.pid").read_text().strip())
        return pid if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == "slurmctld" \
            else None
    except (OSError, ValueError):
        return None


def cluster_up() -> None:
    r = subprocess.run(["bash", str(REPO / "dev" / "cluster.sh"), "up"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_slurmctld_restarting_during_a_20_user_storm_leaves_every_job_a_server_and_every_user_an_answer(hub):
    start_all(hub, STORM)
    time.sleep(2)  # some submitted, some not yet
    subprocess.run(["scontrol", "shutdown", "slurmctld"], check=True, capture_output=True)
    try:
        assert wait_until(lambda: slurmctld_pid() is None, 30), "slurmctld did not stop"
        time.sleep(20)  # the controller is away while spawns go on
    finally:
        cluster_up()  # slurmctld -i: running jobs intact
    models = wait_settled(hub, STORM, 300)  # nothing pending forever
    ready = {u for u, m in models.items() if m.get("ready")}
    told = {u: spawn_words(hub, u) for u in STORM if u not in ready}
    assert all(words.strip() for words in told.values()), told  # every other user is told why
    print(f"storm with slurmctld away 20 s: {len(ready)} of {len(STORM)} ready; the others told: {told}")

    def consistent():  # failed spawns' jobs are cancelled: then jobs and servers match one to one
        models = users_models(hub, STORM)
        servers = {str(m["state"]["job_id"]) for m in models.values() if m.get("ready")}
        return servers == set(prefixed_jobs(STORM)) or (servers, prefixed_jobs(STORM))
    try:
        assert wait_until(lambda: consistent() is True, 90), consistent()
        assert all(s == "RUNNING" for s in prefixed_jobs(STORM).values()), prefixed_jobs(STORM)
        for user in ready:
            assert reachable(hub, user, hub.user_token(user)), user
    finally:
        stop_servers(hub, STORM)


def slurmd_pid(node: str) -> int:
    return int((STATE / "run" / f"slurmd-{node}.pid").read_text().strip())


def test_a_node_whose_slurmd_dies_ends_its_servers_with_node_failure_in_plain_words(hub):
    start_all(hub, NODE)
    models = wait_settled(hub, NODE, 180)
    assert all(m.get("ready") for m in models.values()), models
    jobs = {u: str(m["state"]["job_id"]) for u, m in models.items()}
    nodes = {u: slurm_probe.job(j)["BatchHost"] for u, j in jobs.items()}
    node = max(set(nodes.values()), key=list(nodes.values()).count)
    victims = sorted(u for u, n in nodes.items() if n == node)
    survivors = sorted(set(NODE) - set(victims))
    subprocess.run(["kill", "-9", str(slurmd_pid(node))], check=True)
    try:
        # SLURM marks the node down after SlurmdTimeout (60 s on the dev cluster) and its jobs NODE_FAIL
        def ended():
            models = users_models(hub, victims)
            return all(not m.get("ready") and not m.get("pending") for m in models.values()) and models
        models = wait_until(ended, 240, interval=3)
        assert models, (users_models(hub, victims), subprocess.run(["sinfo", "-N"], capture_output=True,
                                                                    text=True).stdout)
        for user in victims:
            words = (models[user].get("state") or {}).get("last_failure", "")
            assert "NODE_FAIL" in words and "node failure" in words, (user, models[user])
            state, end = subprocess.run(["sacct", "-X", "-n", "-P", "-j", jobs[user], "-o", "State,End"],
                                        capture_output=True, text=True, check=True).stdout.split()[0].split("|")
            assert state == "NODE_FAIL" and end not in ("", "Unknown"), (state, end)  # usage is closed
        assert not set(jobs[u] for u in victims) & set(prefixed_jobs(victims))  # not requeued (--no-requeue)
        alive = users_models(hub, survivors)  # the other node's servers are untouched
        assert all(m.get("ready") for m in alive.values()), alive
    finally:
        cluster_up()  # slurmd again; wait_idle resumes the node (ReturnToService=2)
        stop_servers(hub, NODE)


def test_a_start_that_hangs_fails_at_start_timeout_with_the_log_tail_and_its_job_cancelled(cluster):
    env = {"CARME__CarmeSpawner__cmd": json.dumps([TINY, "--hang"]),
           "CARME__CarmeSpawner__start_timeout": "25", "CARME__CarmeSpawner__http_timeout": "300"}
    with running_hub(extra_env=env, ports=(PUBLIC + 20, PUBLIC + 82, PUBLIC + 21), job_prefix=f"{PREFIX}hang-") as hub:
        began = time.monotonic()
        r = hub.start_server("load47", CPU)
        assert r.status_code in (201, 202), r.text
        events = hub.progress_events("load47", timeout=60)
        took = time.monotonic() - began
        failed = [e["message"] for e in events if e.get("failed")]
        assert failed, events
        words = failed[-1]
        assert "No server within start_timeout (25 s)" in words and "never answered" in words, words
        assert "Last lines of the job's output" in words and "hanging, never listening" in words, words
        assert 15 < took < 40, took  # at the timeout, not before and not much after
        job_id = next(e["message"].split()[3].rstrip(":") for e in events
                      if e.get("message", "").startswith("Submitted SLURM job"))
        assert wait_until(lambda: not slurm_probe.in_queue(job_id), 30), slurm_probe.job(job_id)  # no zombie
        model = users_models(hub, ["load47"])["load47"]
        assert not model.get("ready") and not model.get("pending"), model
