"""Runs on the compute node, in the batch job, before the container starts.

    python3 -m carme_spawner.launcher -- apptainer exec ... IMAGE jupyterhub-singleuser ...

Picks a free TCP port on the node, points JUPYTERHUB_SERVICE_URL at it and `exec`s the command at
once, so SLURM's signals reach the server directly. A forked helper reports the port to the hub's
port callback meanwhile, with the server's own API token (from the job environment, never the
command line): the report's round trip and the HTTP client's imports are not on the spawn's path,
the server takes seconds to start anyway. If the hub refuses the report or cannot be reached, the
helper stops the server (SIGTERM) and says why in the job's output, so the job ends and the spawn
fails with that reason.

The start gate (CARME_START_GATE_DIR, from the hub's CarmeSpawner.start_gate_dir): when more
servers start on a node at once than it has CPUs, they would all crawl through their seconds of
imports together and all answer at the end. Instead each waits for one of the node's `cpu_count`
slots (an flock on DIR/slot-K) and holds it until its port is open, so they answer one after
another: the same last one, every other one sooner. The wait is bounded (CARME_START_GATE_WAIT
seconds, then the server starts anyway), as is the hold; an unusable gate (no directory, no slot
file that opens) is no gate.

It reports the port and nothing else: the hub takes the host from SLURM's allocation, not from
the job. Standard library only, so it runs with the node's plain python3; it imports little
before the exec (every module is start-up time of every spawn).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

REPORT_PATH = "batchspawner"  # the hub path Carme's port callback serves (replacing batchspawner's)


def pick_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def report_port(api_url: str, token: str, port: int, attempts: int = 5) -> None:
    """POST the port to the hub; SystemExit with the reason if it refuses or cannot be reached."""
    url = api_url.rstrip("/") + "/" + REPORT_PATH
    body = ('{"port": %d}' % port).encode()
    for attempt in range(1, attempts + 1):
        try:
            status, text = post(url, token, body, timeout=20)
        except OSError as e:
            if attempt == attempts:
                raise SystemExit(f"carme launcher: cannot reach the hub at {api_url}: {e}")
            print(f"carme launcher: hub not reachable ({e}); retrying", file=sys.stderr, flush=True)
            time.sleep(2 * attempt)
            continue
        if 200 <= status < 300:
            return
        # the hub refused the report: retrying cannot help
        raise SystemExit(f"carme launcher: the hub refused the port report: {status} {text[:300]!r}")


def post(url: str, token: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST JSON `body` to `url` with the token: (status, the answer's first bytes). Plain HTTP speaks
    over a socket (urllib's imports, ssl and email among them, cost every spawn ~40 ms of a node's
    CPU, and a storm starts dozens of launchers per node at once); https:// takes http.client and ssl.
    No proxy from the environment: the hub is the cluster's own address, as the hub's port callback is."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    host, port_text = split_netloc(netloc)
    headers = {"Host": netloc, "Authorization": f"token {token}", "Content-Type": "application/json",
               "Content-Length": str(len(body)), "Connection": "close"}
    if scheme == "https":
        import http.client
        import ssl

        connection = http.client.HTTPSConnection(netloc, timeout=timeout, context=ssl.create_default_context())
        try:
            connection.request("POST", "/" + path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read(300)
        finally:
            connection.close()
    if scheme != "http":
        raise OSError(f"not an http(s) URL: {url}")
    request = (f"POST /{path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body
    with socket.create_connection((host.strip("[]"), int(port_text or 80)), timeout=timeout) as s:
        s.sendall(request)
        answer = read_answer(s)
    status_line, _, rest_of_answer = answer.partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"no HTTP answer from {netloc}: {status_line[:100]!r}")
    return int(parts[1]), rest_of_answer.partition(b"\r\n\r\n")[2][:300]


def read_answer(s: socket.socket, most: int = 8192) -> bytes:
    """The status line, the headers and up to 300 bytes of the body: read until the body's
    Content-Length (or 300 bytes of it) has come, the other side closes, or the socket's time-out,
    whichever is first. A time-out after the status line came is an answer (a server that keeps the
    connection open despite Connection: close); before it, it is OSError as any other."""
    answer = b""
    while len(answer) < most:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:") and line.split(b":", 1)[1].strip().isdigit()), None)
            if length is not None and len(body) >= min(length, 300):
                break
        try:
            chunk = s.recv(4096)
        except (socket.timeout, TimeoutError):
            if b"\r\n" in answer:
                break
            raise
        if not chunk:
            break
        answer += chunk
    return answer


def with_port(service_url: str, port: int) -> str:
    """`service_url` (scheme://host[:port]/path, as the spawner wrote it) with `port`."""
    scheme, _, rest = service_url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{split_netloc(netloc)[0]}:{port}{slash}{path}"


def split_netloc(netloc: str) -> tuple[str, str]:
    """(host, port or "") of a URL's host[:port] part; an IPv6 host keeps its brackets."""
    if netloc.endswith("]") or ":" not in netloc:  # [v6] or a name without a port
        return netloc, ""
    host, port = netloc.rsplit(":", 1)
    return host, port


def take_start_slot(directory: str, slots: int, wait: float) -> int | None:
    """The fd of a held start slot of this node, or None: no gate (off, or no slot file opens) or
    `wait` seconds passed. Slot files are readable by all (an flock needs only that), created
    without following links; a site may create DIR itself (mode 1777, like /tmp).

    A full gate is waited for asleep, not by polling: blocked in flock on one slot (each waiter
    starts on its own, the next one each turn), every SLOT_TURN seconds a look at all of them. In a
    storm dozens of servers wait on a node at once, and their polling would take the CPU the slot
    holders' imports need."""
    import fcntl

    if not directory or slots < 1:
        return None
    try:
        os.mkdir(directory, 0o1777)
        os.chmod(directory, 0o1777)  # mkdir's mode passes through the umask
    except OSError:
        pass  # there already (or not creatable: then no slot file opens below)
    fds = []
    for k in range(slots):
        try:
            fds.append(os.open(os.path.join(directory, f"slot-{k}"), os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444))
        except OSError:
            continue
    if not fds:
        return None
    deadline, turn = time.monotonic() + wait, os.getpid()
    try:
        while True:
            for fd in fds:  # any free one
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fds.remove(fd)
                    return fd
                except BlockingIOError:
                    pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            turn += 1
            fd = fds[turn % len(fds)]
            if _flock_within(fd, min(SLOT_TURN, left)):
                fds.remove(fd)
                return fd
    except OSError:  # no lock to be had here (e.g. ENOLCK on a network file system): no gate
        return None
    finally:
        for fd in fds:
            os.close(fd)


SLOT_TURN = 0.5  # seconds a waiter sleeps on one slot before it looks at all of them again


class _Woken(Exception):
    pass


def _flock_within(fd: int, seconds: float) -> bool:
    """flock(fd) blocking at most `seconds` (an interval timer's SIGALRM ends the wait): held or not.
    OSError (other than the wait ending) goes to the caller."""
    import fcntl

    def wake(signum, frame):
        raise _Woken()

    held = False
    previous = signal.signal(signal.SIGALRM, wake)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Woken:  # the wait ended, or the timer fired just after flock returned: `held` says which
        pass
    finally:
        signal.signal(signal.SIGALRM, previous)
    return held


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def hold_until_open(port: int, server_pid: int, hold: float) -> None:
    """Until the server's port accepts connections, the server is gone, or `hold` seconds passed."""
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not port_open(port):
        try:
            os.kill(server_pid, 0)
        except OSError:
            return
        time.sleep(0.02)


def start_helper(api_url: str, token: str, port: int, server_pid: int, gate: tuple[str, float] | None) -> None:
    """Fork the helper and return once the server may start: at once, or (with a gate) when the
    helper holds a start slot or gave up waiting. The helper reports the port meanwhile and, if
    that fails, stops `server_pid` (this process, once it has exec'd the server); with a slot, it
    keeps it until the port is open. Detached by a double fork: nobody needs to reap it."""
    go_read, go_write = os.pipe()  # not inherited by the server (close-on-exec)
    child = os.fork()
    if child:
        os.close(go_write)
        os.waitpid(child, 0)  # the first child exits at once; its child does the work
        waited = time.monotonic()
        os.read(go_read, 1)  # a byte: go; end of file: the helper is gone, go anyway
        os.close(go_read)
        if gate and time.monotonic() - waited > 0.05:
            print(f"carme launcher: waited {time.monotonic() - waited:.2f} s for a start slot", file=sys.stderr, flush=True)
        return
    try:
        os.close(go_read)
        if os.fork():
            os._exit(0)
        slot = take_start_slot(gate[0], os.cpu_count() or 1, gate[1]) if gate else None
        os.write(go_write, b"1")
        os.close(go_write)
        try:
            report_port(api_url, token, port)
            print(f"carme launcher: port {port} reported at {time.time():.6f}", file=sys.stderr, flush=True)
        except SystemExit as e:
            print(f"{e}; stopping the server", file=sys.stderr, flush=True)
            os.kill(server_pid, signal.SIGTERM)
            os._exit(1)
        if slot is not None:
            hold_until_open(port, server_pid, gate[1])
    except BaseException as e:  # never let the helper return into the caller's code
        print(f"carme launcher: port report failed: {e!r}", file=sys.stderr, flush=True)
        os.kill(server_pid, signal.SIGTERM)
        os._exit(1)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise SystemExit("usage: python3 -m carme_spawner.launcher -- COMMAND [ARGS...]")
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise SystemExit("carme launcher: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be in the job environment")
    print(f"carme launcher: started at {time.time():.6f}", file=sys.stderr, flush=True)
    port = pick_port()
    if os.environ.get("JUPYTERHUB_SERVICE_URL"):
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(os.environ["JUPYTERHUB_SERVICE_URL"], port)
    gate_dir = os.environ.get("CARME_START_GATE_DIR", "")
    try:
        gate_wait = float(os.environ.get("CARME_START_GATE_WAIT", "30"))
    except ValueError:
        gate_wait = 30.0
    start_helper(api_url, token, port, os.getpid(), (gate_dir, gate_wait) if gate_dir else None)
    print(f"carme launcher: port {port} chosen; exec at {time.time():.6f}: {args[0]}", file=sys.stderr, flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
