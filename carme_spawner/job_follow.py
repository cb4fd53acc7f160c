"""Following one submitted job through the hub's SLURM view, until its server answers or it ends.

The spawner submits; `JobFollower` does the waiting: queued (SLURM's reason and expected start),
running on a node, the port report, the first HTTP answer. A job that ends first fails the spawn
within one view interval, with SLURM's state, exit code and the last lines of the job's output
(read as the user). `until_gone` waits for a cancelled job to leave the queue.

Progress goes through `emit(message, percent)`; nothing here talks to the hub.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from carme_slurm import (
    JobView,
    SlurmCommandError,
    SlurmJob,
    SlurmView,
    command_env,
    run_command,
)

from . import progress


#: between two knocks on the server's port while it starts: a refused local connection costs next
#: to nothing (no HTTP client, no resolver), and every tenth of a second here is a tenth of a second
#: of every spawn. With many spawns waiting at once the knocks thin out (PROBES_PER_SECOND in all).
PORT_PROBE_SECONDS = 0.02
PROBES_PER_SECOND = 250
HUNG_TEXT_SECONDS = 2.5  # the most the log tail of a hung start may take: its words must beat the hub's bare timeout
_waiting_for_http = 0


def probe_interval() -> float:
    """Seconds between two knocks of one waiting spawn, given how many wait now."""
    return max(PORT_PROBE_SECONDS, _waiting_for_http / PROBES_PER_SECOND)


async def numeric_address(host: str, port: int) -> str:
    """`host` resolved once (a knock on a name would ask the resolver every time); itself if that fails."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return host
    return infos[0][4][0] if infos else host


async def port_open(host: str, port: int) -> bool:
    """Whether `host:port` accepts a TCP connection now (closed again at once)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class JobEnded(Exception):
    """The job ended (or vanished) before its server answered; str() says why, in plain words."""


class JobFollower:
    def __init__(
        self,
        view: SlurmView,
        job_id: str,
        submitted_at: float,
        emit: Callable[[str, int], None],
        user_prefix: list[str],
        log: logging.Logger,
        log_tail_lines: int = 20,
        on_running: Callable[[], None] | None = None,
    ):
        self.view, self.job_id, self.submitted_at = view, job_id, submitted_at
        self.emit, self.user_prefix, self.log = emit, user_prefix, log
        self.log_tail_lines = log_tail_lines
        self.on_running = on_running or (lambda: None)

    def job_over(self, jobview: JobView) -> bool:
        """SLURM says so: the job ended, or a snapshot begun after submission lacks it."""
        return (jobview.job is not None and jobview.job.is_terminal) or jobview.known_gone(self.submitted_at)

    async def until_running_with_port(self, port_reported: asyncio.Event) -> SlurmJob:
        """Wait until SLURM shows the job running and it has reported its port; JobEnded if it ends."""
        last_message = ""
        port_wait = asyncio.ensure_future(port_reported.wait())
        try:
            while True:
                jobview = self.view.job(self.job_id)
                job = jobview.job
                if self.job_over(jobview):
                    raise JobEnded(await self.failure_text(job))
                if job is not None:
                    if job.is_running:
                        self.on_running()
                    message = (progress.describe_pending(job, time.time(), self.view.pending_position(job))
                               if job.is_pending else progress.describe_running(job))
                    if message != last_message:  # the "running on node N" step shows even when
                        self.emit(message, 30 if job.is_pending else 60)  # the port came in the same snapshot
                        last_message = message
                    if job.is_running and port_reported.is_set():
                        return job
                # worth an early squeue: the first state of a new job, and the one after its port
                # report (the job runs now); other changes come with the regular interval
                kick = jobview.snapshot_started <= self.submitted_at or port_reported.is_set()
                change = asyncio.ensure_future(self.view.jobs.wait_for_snapshot(jobview.snapshot_started, kick=kick))
                # once the port is in, only a new snapshot is news (a done port_wait would spin the loop)
                await asyncio.wait({change} if port_wait.done() else {change, port_wait},
                                   return_when=asyncio.FIRST_COMPLETED)
                change.cancel()
        finally:
            port_wait.cancel()

    async def until_http(self, url: str, timeout: float) -> None:
        """Return once the server answers HTTP at `url`; JobEnded at once if its job ends first.

        Knocks on the port until it accepts a connection (the server has bound it), then asks
        for `url`: that request waits for the server to serve and returns the moment it does.
        """
        global _waiting_for_http
        address = urlsplit(url)
        host = await numeric_address(address.hostname, address.port)
        client = AsyncHTTPClient()
        deadline = time.monotonic() + timeout
        _waiting_for_http += 1
        try:
            while time.monotonic() < deadline:
                if await port_open(host, address.port):
                    try:
                        await client.fetch(HTTPRequest(url, request_timeout=max(1.0, deadline - time.monotonic()),
                                                       follow_redirects=False))
                        return
                    except HTTPClientError as e:
                        if e.code != 599:  # any HTTP answer means the server is up
                            return
                    except OSError:
                        pass
                jobview = self.view.job(self.job_id)
                if self.job_over(jobview):
                    raise JobEnded(await self.failure_text(jobview.job))
                await asyncio.sleep(probe_interval())
        finally:
            _waiting_for_http -= 1
        raise JobEnded(f"JupyterLab in job {self.job_id} did not answer within {timeout:g} s")

    async def until_gone(self, timeout: float = 30) -> bool:
        """After scancel: True once SLURM shows the job ended or no longer lists it."""
        asked = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await self.view.jobs.wait_for_snapshot(asked, timeout=max(1.0, deadline - time.monotonic())):
                return False
            jobview = self.view.job(self.job_id)
            if jobview.job is None or jobview.job.is_terminal:
                return True
            asked = jobview.snapshot_started
        return False

    async def failure_text(self, job: SlurmJob | None) -> str:
        text = progress.describe_end(job, self.job_id)
        tail = await self.log_tail(job)
        return f"{text}\nLast lines of the job's output:\n{tail}" if tail else text

    async def hung_start_text(self, start_timeout: float, port: int | None,
                              within: float = HUNG_TEXT_SECONDS) -> str:
        """Why a start that hangs fails: where the job got to, and its log tail (read within `within` seconds, so
        that these words reach the user before the hub's own start_timeout does)."""
        job = self.view.job(self.job_id).job
        if job is None or job.is_pending:
            what = "was still waiting in the queue"
        elif port is None:
            what = "ran, but its server never reported its port"
        else:
            what = f"ran and reported port {port}, but its server never answered"
        text = f"No server within start_timeout ({start_timeout:g} s): SLURM job {self.job_id} {what}. The job is cancelled."
        try:  # the whole read bounded (a tail stuck on a hung file system outlives its kill): cancelled, it is killed
            async with asyncio.timeout(within):
                tail = await self.log_tail(job, within)
        except TimeoutError:
            tail = ""
        return f"{text}\nLast lines of the job's output:\n{tail}" if tail else text

    async def log_tail(self, job: SlurmJob | None, timeout: float = 10) -> str:
        """The end of the job's output, read AS THE USER (the path is the user's to choose)."""
        return await self._read_output(job, "tail", self.log_tail_lines, timeout)

    async def log_head(self, job: SlurmJob | None, lines: int = 10) -> str:
        """The start of the job's output (the launcher's lines), read as the user."""
        return await self._read_output(job, "head", lines)

    async def _read_output(self, job: SlurmJob | None, command: str, lines: int, timeout: float = 10) -> str:
        if job is None or not job.output_path:
            return ""
        try:
            out = await run_command(
                [*self.user_prefix, command, "-n", str(lines), "--", job.output_path],
                env=command_env(),
                timeout=timeout,
            )
        except SlurmCommandError as e:
            self.log.info("no log tail for job %s: %s", job.job_id, e)
            return ""
        return out[-4000:]
