"""Following a job: event-driven, no spinning while SLURM's news is pending, and every step shown."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest

from carme_slurm import JobView
from carme_slurm.commands import run_command
from carme_spawner.job_follow import JobEnded, JobFollower

from .test_job_reflector import job


class SlowView:
    """Shows the job PENDING until SLURM's next snapshot, 0.3 s from now, then RUNNING."""

    def __init__(self):
        self.views = 0
        self.news_at = asyncio.get_running_loop().time() + 0.3
        self.jobs = self  # the jobs reflector's wait_for_snapshot lives here too

    def pending(self) -> bool:
        return asyncio.get_running_loop().time() < self.news_at

    def job(self, job_id):
        self.views += 1
        pending = self.pending()
        return JobView(job(job_id, state="PENDING" if pending else "RUNNING"), snapshot_started=100.0 if pending else 200.0)

    async def wait_for_snapshot(self, newer_than, timeout=None, kick=True):
        await asyncio.sleep(max(0.0, self.news_at - asyncio.get_running_loop().time()))
        return True

    def pending_position(self, job):
        return (2, 3)  # second of three Carme jobs waiting in the partition


def follower(view, events):
    return JobFollower(view, "7", 50.0, lambda message, percent: events.append((percent, message)), [],
                       logging.getLogger("test"))


async def test_a_reported_port_does_not_spin_the_wait_loop():
    reported = asyncio.Event()
    reported.set()  # the job reported its port before SLURM's next snapshot says RUNNING
    view, events = SlowView(), []
    running = await follower(view, events).until_running_with_port(reported)
    assert running.is_running
    assert view.views <= 3, f"the loop turned {view.views} times while waiting 0.3 s"


class RunningView(SlowView):
    def __init__(self):
        super().__init__()
        self.news_at = 0.0  # the first snapshot already shows the job RUNNING


async def test_the_running_step_is_shown_even_when_the_port_came_in_the_same_snapshot():
    reported = asyncio.Event()
    reported.set()
    events = []
    await follower(RunningView(), events).until_running_with_port(reported)
    assert events == [(60, "Job 7 is running on carme-n1; starting JupyterLab in the container.")]


class ServerLater:
    """A tornado server that binds its port after `bind_after` s and serves after `serve_after` s
    (JupyterLab binds before its extensions load, and answers only once its loop runs)."""

    def __init__(self, bind_after: float, serve_after: float):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.bind_after, self.serve_after = bind_after, serve_after
        self.served_at = None
        self.sock = None

    async def run(self):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.bind_after)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.sock.setblocking(False)
        await asyncio.sleep(self.serve_after - self.bind_after)
        self.served_at = loop.time()
        while True:  # answer every connection (the knocks too) with a minimal HTTP 200
            conn, _ = await loop.sock_accept(self.sock)
            try:
                await asyncio.wait_for(loop.sock_recv(conn, 4096), 0.5)
                await loop.sock_sendall(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except (OSError, asyncio.TimeoutError):
                pass
            finally:
                conn.close()


async def test_the_first_answer_is_seen_within_a_knock_of_the_server_serving():
    server = ServerLater(bind_after=0.3, serve_after=0.6)
    task = asyncio.ensure_future(server.run())
    try:
        await follower(RunningView(), []).until_http(f"http://127.0.0.1:{server.port}/user/a/api", timeout=10)
        seen = asyncio.get_running_loop().time()
    finally:
        task.cancel()
        if server.sock:
            server.sock.close()
    assert server.served_at is not None and seen >= server.served_at
    # bound at 0.3 s, so the request made then waited for the answer: no poll interval on top
    assert seen - server.served_at < 0.25


class EndedView(RunningView):
    def job(self, job_id):
        return JobView(job(job_id, state="FAILED"), snapshot_started=200.0)


async def test_a_job_that_ends_before_answering_fails_the_wait_with_slurm_s_words():
    with pytest.raises(JobEnded, match="7"):
        await follower(EndedView(), []).until_http("http://127.0.0.1:9/user/a/api", timeout=10)


async def test_a_waiting_job_says_where_it_stands_among_carme_s_waiting_jobs():
    reported = asyncio.Event()
    reported.set()
    events = []
    await follower(SlowView(), events).until_running_with_port(reported)
    assert events[0][1] == "Job 7 is queued in partition interactive: waiting for the scheduler's next pass; " \
        "number 2 of 3 Carme jobs waiting there.", events


class OutputView:
    """Shows the job RUNNING with an output file."""

    def __init__(self, path):
        self.path = path

    def job(self, job_id):
        return JobView(job(job_id, state="RUNNING", output_path=str(self.path)), snapshot_started=100.0)


async def test_a_hung_start_s_words_come_in_time_even_when_its_log_tail_does_not(tmp_path):
    # the tail is read as the user; here "as the user" is a command that hangs (a loaded node's sudo)
    out, started = tmp_path / "slurm-7.out", tmp_path / "started"
    out.write_text("hanging, never listening\n")
    slow_prefix = ["sh", "-c", f"touch {started}; sleep 30", "as-user"]
    slow = JobFollower(OutputView(out), "7", 50.0, lambda *a: None, slow_prefix, logging.getLogger("test"))
    loop = asyncio.get_running_loop()
    began = loop.time()
    words = await slow.hung_start_text(25, 8888, within=0.5)
    assert loop.time() - began < 5  # the bound held: not the 30 s of the hanging read
    assert words.startswith("No server within start_timeout (25 s): SLURM job 7 ran and reported port 8888, but its "
                            "server never answered. The job is cancelled."), words
    assert "Last lines" not in words and started.exists()
    quick = JobFollower(OutputView(out), "7", 50.0, lambda *a: None, [], logging.getLogger("test"))
    assert "Last lines of the job's output:\nhanging, never listening" in await quick.hung_start_text(25, 8888)



async def test_a_command_whose_caller_gives_up_is_killed(tmp_path):
    marker = tmp_path / "pid"
    task = asyncio.ensure_future(run_command(["sh", "-c", f"echo $$ > {marker}.new; mv {marker}.new {marker}; exec sleep 30"]))
    for _ in range(250):
        if marker.exists():
            break
        await asyncio.sleep(0.02)
    pid = int(marker.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"
