"""TensorBoard on a unix socket (TensorBoard itself listens on TCP ports only).

    python -m carme_lab.apps.tensorboard_socket --socket DIR/tensorboard.sock [TENSORBOARD FLAGS...]

Runs `tensorboard.program.TensorBoard` with a server class that binds its WSGI app to an AF_UNIX
socket (werkzeug's threaded server, as TensorBoard's own), so the session's TensorBoard has no
TCP port other users of the node could reach. The socket's directory must be this user's own with
mode 0700 (carme_lab.apps makes it); anything else is refused before TensorBoard starts.

TCP stays off throughout: `--host`, `--port` and `--bind_all` are refused, and `--load_fast=false`
is forced, since the fast loader (tensorboard-data-server) would serve the logs on a localhost
TCP port. Other flags (--logdir, --reload_interval, ...) pass to TensorBoard.
"""

from __future__ import annotations

import argparse
import os
import sys

TCP_FLAGS = ("--host", "--port", "--bind_all", "--load_fast", "--grpc_data_provider")


def check_socket_path(path: str) -> str:
    """The absolute socket path if its directory is this user's, mode 0700; SystemExit otherwise."""
    from carme_lab.apps import private_directory

    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not private_directory(directory):
        raise SystemExit(f"tensorboard_socket: {directory} must be a directory of this user with mode 0700 "
                         "(nobody else may reach the socket)")
    if len(path.encode()) > 107:
        raise SystemExit(f"tensorboard_socket: the socket path {path} is longer than a unix socket allows")
    return path


def split_args(argv: list[str]) -> tuple[str, list[str]]:
    """(socket path, TensorBoard's own flags); SystemExit on a TCP flag."""
    parser = argparse.ArgumentParser(prog="python -m carme_lab.apps.tensorboard_socket", add_help=True)
    parser.add_argument("--socket", required=True, help="the unix socket to listen on (in a 0700 directory)")
    known, rest = parser.parse_known_args(argv)
    for arg in rest:
        if arg.split("=", 1)[0] in TCP_FLAGS:
            raise SystemExit(f"tensorboard_socket: {arg.split('=', 1)[0]} is not allowed: TensorBoard serves on "
                             "the unix socket only")
    return known.socket, rest


def unix_server_class(socket_path: str):
    """A TensorBoardServer factory serving on `socket_path`."""
    from tensorboard import program
    from werkzeug import serving

    class UnixSocketServer(serving.ThreadedWSGIServer, program.TensorBoardServer):
        daemon_threads = True

        def __init__(self, wsgi_app, flags):
            self._flags = flags
            old = os.umask(0o077)  # the socket file itself: this user only (its directory is 0700 too)
            try:
                super().__init__(f"unix://{socket_path}", 0, wsgi_app)
            finally:
                os.umask(old)

        def get_url(self):
            return f"unix://{socket_path}"

        def print_serving_message(self):
            sys.stderr.write(f"TensorBoard on unix socket {socket_path} (no TCP port)\n")
            sys.stderr.flush()

    return UnixSocketServer


def main(argv: list[str] | None = None) -> int:
    socket_arg, flags = split_args(sys.argv[1:] if argv is None else argv)
    socket_path = check_socket_path(socket_arg)
    from tensorboard import program

    class SocketTensorBoard(program.TensorBoard):
        def _register_info(self, server):
            """No TensorBoardInfo file: it describes a TCP port (`tensorboard --list`), there is none."""

    board = SocketTensorBoard(server_class=unix_server_class(socket_path))
    board.configure(["tensorboard", *flags, "--load_fast=false"])
    return board.main()


if __name__ == "__main__":
    sys.exit(main())
