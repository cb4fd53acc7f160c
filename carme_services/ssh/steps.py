"""The byte pumps between an SSH channel and a job step (asyncssh sessions; the I/O of carme-ssh).

- `StepSession`: a session channel (shell, exec, sftp). With a pty the step's srun gets a local
  pseudo-terminal (its controlling tty) and runs `srun --pty`; window changes are set on it
  and srun passes them on. Without one: three pipes, stderr kept apart.
- `ForwardSession`: one direct-tcpip channel (`ssh -L`), pumped into the relay step.

Both count the bytes each way, end the step when the channel goes (SIGTERM to srun, which
ends the step), and report to a `SessionLog`. Flow control both ways: the channel stops
reading while the step's stdin is backed up, the step's output waits while the channel is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Awaitable, Callable

import asyncssh

HIGH_WATER = 1 << 20
CHUNK = 65536

Starter = Callable[["Pump"], Awaitable[asyncio.subprocess.Process]]


class Pump:
    """What both sessions share: the step process, the counters, flow control, the end."""

    kind = "session"

    def __init__(self, on_end: Callable[[Pump], None]):
        self.on_end = on_end
        self.chan = None
        self.proc: asyncio.subprocess.Process | None = None
        self.master: int | None = None  # the pty's master side, when the step has one
        self.bytes_in = self.bytes_out = 0
        self.outcome = ""
        self.pending: list[bytes] = []  # data that came before the step was running
        self.eof = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.ended = False

    # ---- channel -> step -------------------------------------------------------------------------

    def data_received(self, data, datatype):
        self.bytes_in += len(data)
        if self.proc is None:
            self.pending.append(data)
        else:
            self._to_step(data)

    def _to_step(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)  # a terminal's input is small (keystrokes, pastes)
            return
        if self.proc.stdin is None or self.proc.stdin.is_closing():
            return
        self.proc.stdin.write(data)
        if self.proc.stdin.transport.get_write_buffer_size() > HIGH_WATER:
            self.chan.pause_reading()
            asyncio.ensure_future(self._drained())

    async def _drained(self) -> None:
        with contextlib.suppress(Exception):
            await self.proc.stdin.drain()
        if self.chan is not None:
            self.chan.resume_reading()

    def eof_received(self):
        self.eof = True
        if self.proc is not None:
            self._close_stdin()
        return True  # half-close only: the step's output and exit status follow (False would close it)

    def _close_stdin(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")
        elif self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write_eof()

    # ---- step -> channel -------------------------------------------------------------------------

    def pause_writing(self):
        self.writable.clear()

    def resume_writing(self):
        self.writable.set()

    async def _from(self, read: Callable[[], Awaitable[bytes]], stderr: bool = False) -> None:
        while True:
            try:
                data = await read()
            except OSError:  # the pty's slave side closed
                return
            if not data:
                return
            self.bytes_out += len(data)
            await self.writable.wait()
            if self.chan is None:
                return
            (self.chan.write_stderr if stderr else self.chan.write)(data)

    async def run(self, start: Starter) -> int | None:
        """Start the step and pump until it ends; its exit status (None if it could not start)."""
        try:
            self.proc = await start(self)
        except Exception as e:  # noqa: BLE001 - the user reads why
            self.outcome = f"could not start: {e}"
            return None
        for data in self.pending:
            self._to_step(data)
        self.pending.clear()
        if self.eof:
            self._close_stdin()
        if self.master is not None:
            readers = [self._from(self._read_master)]
        else:
            readers = [self._from(lambda: self.proc.stdout.read(CHUNK))]
            if self.proc.stderr is not None:
                readers.append(self._from(lambda: self.proc.stderr.read(CHUNK), stderr=True))
        await asyncio.gather(*readers)
        status = await self.proc.wait()
        self.outcome = self.outcome or f"exit {status}"
        return status

    async def _read_master(self) -> bytes:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self.master, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(self.master)
        return os.read(self.master, CHUNK)

    def stop(self, why: str) -> None:
        """End the step (the channel went): srun passes SIGTERM on to the step."""
        self.outcome = self.outcome or why
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def finish(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None
        if not self.ended:
            self.ended = True
            self.on_end(self)


class StepSession(Pump, asyncssh.SSHServerSession):
    """A session channel: shell, exec or the sftp subsystem, as a job step."""

    def __init__(self, open_step: Callable[[StepSession], Awaitable[None]], on_end, may_pty: bool = True):
        super().__init__(on_end)
        self.open_step, self.may_pty = open_step, may_pty
        self.term: str | None = None
        self.size = (80, 24, 0, 0)
        self.command: str | None = None
        self.kind = ""

    def connection_made(self, chan):
        self.chan = chan

    def pty_requested(self, term_type, term_size, term_modes):
        if not self.may_pty:
            return False
        self.term, self.size = term_type or "xterm", term_size
        return True

    def shell_requested(self):
        self.kind = "shell"
        return True

    def exec_requested(self, command):
        self.kind, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem):
        if subsystem != "sftp":
            return False
        self.kind = "sftp"
        return True

    def session_started(self):
        asyncio.ensure_future(self.open_step(self))

    def terminal_size_changed(self, width, height, pixwidth, pixheight):
        self.size = (width, height, pixwidth, pixheight)
        if self.master is not None:
            set_size(self.master, self.size)

    def break_received(self, msec):
        return False

    def connection_lost(self, exc):
        self.chan = None
        self.writable.set()
        self.stop("the client went away")

    def open_pty(self) -> int:
        """A pseudo-terminal for the step (the slave side; this keeps the master)."""
        self.master, slave = os.openpty()
        set_size(self.master, self.size)
        return slave

    def end(self, status: int | None, message: str = "") -> None:
        if self.chan is not None:
            if message:
                self.chan.write_stderr((message.rstrip("\n") + "\r\n" if self.term else message.rstrip("\n") + "\n")
                                       .encode())
            self.chan.exit(255 if status is None else status)
        self.finish()


class ForwardSession(Pump, asyncssh.SSHTCPSession):
    """One forwarded connection (`ssh -L`), pumped into its relay step (already connected)."""

    kind = "forward"

    def __init__(self, proc: asyncio.subprocess.Process, on_end):
        super().__init__(on_end)
        self.proc = proc

    def connection_made(self, chan):
        self.chan = chan

    def session_started(self):
        asyncio.ensure_future(self._pump())

    async def _pump(self):
        async def started(_pump):
            return self.proc

        await self.run(started)
        if self.chan is not None:
            self.chan.close()
        self.finish()

    def connection_lost(self, exc):
        self.chan = None
        self.writable.set()
        self.stop("the client closed the forward")
        if self.proc.returncode is not None:
            self.finish()


def set_size(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def controlling_tty(slave: int) -> Callable[[], None]:
    """A preexec_fn: the child leads a new session with `slave` as its controlling terminal (so srun
    --pty sees a terminal, and a window change reaches it as SIGWINCH)."""

    def make():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    return make
