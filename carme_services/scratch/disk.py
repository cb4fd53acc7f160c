"""The scratch service's one pass of disk I/O: read the node directories, remove what the sweeper chose.

Blocking file-system work, run in a thread by the service (never on its event loop). A size is a
bounded walk (`max_entries` files at most, then "at least" that much), not an unbounded `du`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from carme_slurm.scratch import ENTRY, Leftover, ScratchLayout

NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what the prolog accepts as SLURMD_NODENAME


@dataclass(frozen=True)
class ScratchEntry:
    """One job's scratch as found on disk."""

    node: str
    job_id: str
    path: str
    kind: str  # "dir" (a node directory) or "beeond" (a BeeOND mount, from its node file)
    uid: int
    user: str
    bytes: int
    bytes_exact: bool  # False: the walk stopped at max_entries, `bytes` is a lower bound
    mtime: float
    nodes: tuple[str, ...] = ()  # a BeeOND instance's nodes


def listing(root: str) -> list[tuple[str, float]]:
    """(name, ctime) of Carme's entries directly in `root` ([] when it does not exist). The change
    time, not the modification time: a user can set their directory's mtime, not its ctime."""
    found = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if ENTRY.fullmatch(entry.name):
                    try:
                        found.append((entry.name, entry.stat(follow_symlinks=False).st_ctime))
                    except FileNotFoundError:
                        pass
    except (FileNotFoundError, NotADirectoryError):
        return []
    return found


def bounded_size(path: str, max_entries: int) -> tuple[int, bool]:
    """Bytes under `path` (not following links, one file system) and whether the count is complete."""
    total, seen = 0, 0
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0, True
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        return total, False
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if st.st_dev == top.st_dev:
                            stack.append(entry.path)
                    else:
                        total += st.st_blocks * 512
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total, True


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_entries(layout: ScratchLayout, nodes: list[str], max_entries: int) -> list[ScratchEntry]:
    """Every job's scratch on the node directories this host reaches, and its BeeOND instances."""
    found = []
    for node, root in node_roots(layout, nodes).items():
        for name, mtime in listing(root):
            match = ENTRY.fullmatch(name)
            if match["kind"]:
                continue
            path = f"{root}/{name}"
            try:
                uid = os.lstat(path).st_uid
            except FileNotFoundError:
                continue
            size, exact = bounded_size(path, max_entries)
            found.append(ScratchEntry(node, match["job"], path, "dir", uid, user_name(uid), size, exact, mtime))
    for name, mtime in listing(layout.state_dir):
        match = ENTRY.fullmatch(name)
        if match["kind"] != ".nodes":
            continue
        try:
            hosts = tuple(h for h in Path(layout.state_dir, name).read_text().split() if h)
        except FileNotFoundError:
            continue
        mount = layout.beeond_mount(match["job"])
        try:
            uid = os.lstat(mount).st_uid
        except FileNotFoundError:
            uid = 0
        size, exact = bounded_size(mount, max_entries)
        found.append(ScratchEntry(hosts[0] if hosts else "", match["job"], mount, "beeond", uid, user_name(uid),
                                  size, exact, mtime, hosts))
    return found


def node_roots(layout: ScratchLayout, nodes: list[str]) -> dict[str, str]:
    """{node: its node directory} for plain node names, each directory once (without {node} in
    node_dir every node names the same one)."""
    roots: dict[str, str] = {}
    for node in nodes:
        root = layout.node_root(node)
        if NODE_NAME.fullmatch(node) and root not in roots.values():
            roots[node] = root
    return roots


def entries_by_node(layout: ScratchLayout, nodes: list[str]) -> tuple[dict[str, list[tuple[str, float]]],
                                                                        list[tuple[str, float]]]:
    """What the sweeper decides on: each node directory's entries, and the state dir's."""
    return {node: listing(root) for node, root in node_roots(layout, nodes).items()}, listing(layout.state_dir)


def remove(leftover: Leftover, layout: ScratchLayout) -> str:
    """Remove one leftover; "" when done, else why not (logged by the caller)."""
    if leftover.kind == "nodes":  # a BeeOND instance whose epilog never ran: stop it first
        info = f"{layout.state_dir}/job-{leftover.job_id}.info"
        try:
            done = subprocess.run(
                [layout.beeond_command, "stop", "-n", leftover.path, "-i", info, "-L", "-d", *layout.beeond_stop_flags],
                capture_output=True, text=True, timeout=layout.beeond_timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"beeond stop: {e}"
        if done.returncode != 0 and "no running" not in done.stderr.lower():
            return f"beeond stop exited {done.returncode}: {done.stderr.strip()[-300:]}"
        mount = layout.beeond_mount(leftover.job_id)
        try:
            os.rmdir(mount)
        except FileNotFoundError:
            pass
        except OSError as e:
            return f"{mount} is not empty after beeond stop: {e}"
        for path in (leftover.path, info):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                return f"{path}: {e}"
        return ""
    try:
        if leftover.kind == "dir" and not os.path.islink(leftover.path):
            shutil.rmtree(leftover.path)
        else:
            os.unlink(leftover.path)
    except FileNotFoundError:
        return ""
    except OSError as e:
        return str(e)
    return ""


def append_log(layout: ScratchLayout, text: str) -> None:
    """A line in the node scripts' log (the one place scratch events are read back from)."""
    try:
        with open(layout.log_file, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} service: {text}\n")
    except OSError:
        pass
