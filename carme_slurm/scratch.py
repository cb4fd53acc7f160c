"""Where a job's scratch lives: one layout shared by the prolog/epilog, the batch script and the sweeper.

A single-node job gets a directory on its node's local SSD, ``<node_dir>/job-<id>`` (owned by the
user, mode 0700). A multi-node job gets a BeeOND instance over its nodes, started by the prolog on
the first node: raw data under ``<beeond_data_dir>/job-<id>`` on every node, the file system
mounted at ``<beeond_mount_dir>/job-<id>``. Either way the container sees it at `container_path`
and the job gets ``CARME_SCRATCH``.

Next to a job's directory the prolog may leave ``job-<id>.failed`` (why the scratch could not be
made, for the batch script to show); in `state_dir` it keeps ``job-<id>.nodes`` (the BeeOND node
file, which the epilog and the sweeper need to stop the instance).

Everything here is pure: the paths, their checks, and the sweeper's decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a path the prolog's shell text is built from: plain characters only (it is quoted anyway)
_PATH = re.compile(r"/[A-Za-z0-9_.@+/-]*")
_NODE_PATH = re.compile(r"/[A-Za-z0-9_.@+/{}-]*")
#: BeeOND's own start/stop options Carme sets itself (a site adds others through the *_flags settings)
_OWN_BEEOND_FLAGS = ("-n", "-d", "-c", "-L")
_FLAG = re.compile(r"-[A-Za-z]|[A-Za-z0-9_.,:/=+-]{1,200}")
#: the container paths a scratch may not cover
_SYSTEM_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin",
                 "/sys", "/usr", "/var")
ENTRY = re.compile(r"job-(?P<job>[0-9]{1,12})(?P<kind>|\.failed|\.nodes)")


@dataclass(frozen=True)
class ScratchLayout:
    """The scratch settings the node scripts, the batch script and the sweeper share."""

    node_dir: str = "/local/ssd/carme"  # {node} is the node's SLURM name (several slurmds on one host)
    container_path: str = "/scratch"
    beeond: bool = True  # multi-node jobs get BeeOND; False: a directory on each node
    beeond_command: str = "/usr/bin/beeond"
    beeond_data_dir: str = "/local/ssd/beeond"
    beeond_mount_dir: str = "/mnt/beeond"
    beeond_start_flags: tuple[str, ...] = ("-P", "-F")
    beeond_stop_flags: tuple[str, ...] = ("-P",)
    beeond_timeout: int = 300
    hostlist_command: str = "/usr/bin/hostlist"
    state_dir: str = "/var/lib/carme/scratch"
    log_file: str = "/var/log/carme-scratch.log"

    def job_dir(self, node: str, job_id: str) -> str:
        return f"{self.node_root(node)}/job-{job_id}"

    def node_root(self, node: str) -> str:
        return self.node_dir.replace("{node}", node)

    def beeond_mount(self, job_id: str) -> str:
        return f"{self.beeond_mount_dir}/job-{job_id}"

    def node_dir_parts(self) -> tuple[str, str]:
        """node_dir split at {node} (the shell joins the parts around "$SLURMD_NODENAME")."""
        before, _, after = self.node_dir.partition("{node}")
        return before, after


def check_layout(layout: ScratchLayout) -> ScratchLayout:
    """`layout` if every path and flag is safe to build shell text from; else ValueError naming the key."""
    for key in ("container_path", "beeond_command", "beeond_data_dir", "beeond_mount_dir", "hostlist_command",
                "state_dir", "log_file"):
        _check_path(key, getattr(layout, key), _PATH)
    _check_path("node_dir", layout.node_dir, _NODE_PATH)
    if layout.node_dir.count("{node}") > 1 or re.search(r"[{}]", layout.node_dir.replace("{node}", "")):
        raise ValueError(f"node_dir: may hold {{node}} once and no other braces, got {layout.node_dir!r:.80}")
    target = layout.container_path.rstrip("/") or "/"
    if target in _SYSTEM_PATHS or any(target.startswith(p + "/") for p in _SYSTEM_PATHS if p != "/"):
        raise ValueError(f"container_path: must not cover the container's system paths, got {target!r}")
    for key in ("beeond_start_flags", "beeond_stop_flags"):
        flags = getattr(layout, key)
        if not isinstance(flags, tuple):
            raise ValueError(f"{key}: must be a list of flags")
        for i, flag in enumerate(flags):
            if not isinstance(flag, str) or not _FLAG.fullmatch(flag):
                raise ValueError(f"{key}[{i}]: must be a flag like -P or a plain value, got {flag!r:.80}")
            if flag in _OWN_BEEOND_FLAGS:
                raise ValueError(f"{key}[{i}]: {flag} is set by Carme itself")
    # a failing start waits for start and stop: slurm.conf's PrologEpilogTimeout must exceed twice this
    if not isinstance(layout.beeond_timeout, int) or not 10 <= layout.beeond_timeout <= 1200:
        raise ValueError(f"beeond_timeout: must be 10..1200 seconds, got {layout.beeond_timeout!r}")
    return layout


def layout_from_settings(values: dict) -> ScratchLayout:
    """A checked layout from settings (a dict of ScratchLayout's fields; lists become tuples)."""
    known = set(ScratchLayout.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"scratch has no setting {unknown[0]!r}; settings: {', '.join(sorted(known))}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return check_layout(ScratchLayout(**fields))


def scratch_words(layout: ScratchLayout, node_tmp_mb: dict[str, int]) -> str:
    """What a user is told about their job's scratch: where, how big (the nodes' TmpDisk), how long."""
    sizes = sorted({mb for mb in node_tmp_mb.values() if mb > 0})
    if not sizes:
        size = ""
    elif len(sizes) == 1:
        size = f", {_gb(sizes[0])}"
    else:
        size = f", {_gb(sizes[0])} to {_gb(sizes[-1])} by node"
    return (f"a fast directory of your own at {layout.container_path} ($CARME_SCRATCH) on the node's local SSD"
            f"{size}; it is deleted when the server stops, so copy what you keep to your home or project.")


def session_words(layout: ScratchLayout, node: str, node_tmp_mb: int, asked_gib: int) -> str:
    """What the running server's progress says about its scratch: where, on which node, how big."""
    size = f"{_gb(node_tmp_mb)} on that SSD" if node_tmp_mb > 0 else "the SSD's free space"
    asked = f", {asked_gib} GiB asked for" if asked_gib else ""
    return (f"Your scratch: {layout.container_path} ($CARME_SCRATCH) on {node}'s local SSD ({size}{asked}); "
            "it is deleted when the server stops.")


def scratch_capacity_mb(nodes) -> dict[str, int]:
    """{partition: the largest TmpDisk (MB, SLURM's 2**20 bytes) of its nodes, whatever their state}:
    a server runs on one node, so a job asking more scratch (--tmp) than this can never start there."""
    capacity: dict[str, int] = {}
    for node in nodes:
        for partition in node.partitions:
            capacity[partition] = max(capacity.get(partition, 0), node.tmp_disk_mb)
    return capacity


def _gb(mb: int) -> str:
    return f"{mb / 1000:.0f} GB" if mb >= 10_000 else f"{mb / 1000:.1f} GB"


def _check_path(key: str, value: object, pattern: re.Pattern) -> None:
    if not isinstance(value, str) or len(value) > 1024 or not pattern.fullmatch(value):
        raise ValueError(f"{key}: must be an absolute path of plain characters, got {value!r:.80}")
    if ".." in value.split("/"):
        raise ValueError(f"{key}: must not contain '..', got {value!r:.80}")


@dataclass(frozen=True)
class Leftover:
    """A scratch entry whose job SLURM no longer knows: the sweeper removes it."""

    node: str  # "" for an entry of the state dir (a BeeOND node file)
    path: str
    job_id: str
    kind: str  # "dir", "failed" or "nodes"


def leftovers(entries: dict[str, list[tuple[str, float]]], state_entries: list[tuple[str, float]],
              live_job_ids: set[str], snapshot_time: float, grace: float, layout: ScratchLayout) -> list[Leftover]:
    """The scratch entries to remove: of jobs absent from a SLURM snapshot taken after `grace` seconds.

    `entries` maps a node to the (name, mtime) pairs in its node_dir; `state_entries` are the state
    dir's. An entry is left alone when its job is in the snapshot, when it changed within `grace`
    seconds of the snapshot (its job may be too new for it), and when its name is not Carme's.
    """
    found: list[Leftover] = []

    def consider(node: str, root: str, name: str, mtime: float) -> None:
        match = ENTRY.fullmatch(name)
        if not match or match["job"] in live_job_ids or mtime > snapshot_time - grace:
            return
        kind = {"": "dir", ".failed": "failed", ".nodes": "nodes"}[match["kind"]]
        found.append(Leftover(node, f"{root}/{name}", match["job"], kind))

    for node, names in sorted(entries.items()):
        for name, mtime in names:
            if not name.endswith(".nodes"):
                consider(node, layout.node_root(node), name, mtime)
    for name, mtime in state_entries:
        if name.endswith(".nodes"):
            consider("", layout.state_dir, name, mtime)
    return found
