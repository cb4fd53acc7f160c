"""carme-ssh's port-forward relay: one forwarded connection, run as a step of the user's job, as the user.

    python -m carme_services.ssh.relay PORT

It connects to PORT on this node's loopback only if the socket listening there belongs to this
user (the uid column of /proc/net/tcp and tcp6, which the kernel fills in): a user's forward
cannot reach another user's app on a shared node, although any process could connect to it.
Then it copies stdin to the connection and the connection to stdout until both ends close.

Its first line on stderr tells the gateway the outcome, before any data:
`carme-relay: connected 127.0.0.1:PORT` or `carme-relay: refused <why>` (exit 2).
Standard library only: it runs on the nodes with the launcher's Python.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

LISTEN = "0A"
MARK = "carme-relay:"
CHUNK = 65536
#: a listener on one of these accepts a connection to the loopback; the address to connect to
LOOPBACK = {"0100007F": "127.0.0.1", "00000000": "127.0.0.1",
            "00000000000000000000000001000000": "::1", "00000000000000000000000000000000": "::1"}


def listeners(port: int, tables: dict[str, str]) -> list[tuple[str, int]]:
    """(address to connect to, owner uid) of every loopback-reachable socket listening on `port`,
    from the text of /proc/net/tcp and /proc/net/tcp6 (`tables`: name -> text)."""
    found = []
    for text in tables.values():
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8 or fields[3] != LISTEN:
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and address in LOOPBACK:
                found.append((LOOPBACK[address], int(fields[7])))
    return found


def choose(port: int, found: list[tuple[str, int]], uid: int) -> tuple[str | None, str]:
    """(address, "") to connect to, or (None, why not)."""
    mine = [address for address, owner in found if owner == uid]
    if mine:
        return mine[0], ""
    if found:
        return None, f"port {port} on this node is another user's; a forward reaches only your own apps"
    return None, f"nothing listens on port {port} on this node's loopback"


def read_tables() -> dict[str, str]:
    tables = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as f:
                tables[name] = f.read()
        except OSError:
            pass
    return tables


def pump(sock: socket.socket) -> None:
    def inbound():
        try:
            while data := os.read(0, CHUNK):
                sock.sendall(data)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=inbound, daemon=True).start()
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or not 0 < int(argv[0]) < 65536:
        print(f"{MARK} refused usage: relay PORT (1-65535)", file=sys.stderr, flush=True)
        return 2
    port = int(argv[0])
    address, why = choose(port, listeners(port, read_tables()), os.getuid())
    if address is None:
        print(f"{MARK} refused {why}", file=sys.stderr, flush=True)
        return 2
    try:
        sock = socket.create_connection((address, port), timeout=10)
    except OSError as e:
        print(f"{MARK} refused connecting to {address}:{port}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 2
    sock.settimeout(None)
    print(f"{MARK} connected {address}:{port}", file=sys.stderr, flush=True)
    pump(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
