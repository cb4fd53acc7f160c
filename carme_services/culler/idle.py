"""The culler's decisions (pure): GPU samples in, per server a verdict: busy, idle (warn), stop, exempt.

A server is idle when, for `idle_seconds`, both held: its GPUs stayed below `gpu_threshold` percent
in every sample (the node's `nvidia-smi`, read by the culler as root: nothing a job writes changes
it) and the hub saw no activity of its JupyterLab (`last_activity`). A CPU-only server is judged by
activity alone, like jupyterhub-idle-culler. An idle server is warned first; `warn_seconds` later,
still idle, it is stopped. "Keep running" restarts its idle clock, at most `keep_running_max`
times and once per `keep_running_period`.

Doubt is not evidence: a GPU server with no samples is never judged idle, and its idle clock never
starts before its first sample (a culler that just started knows nothing of the time before).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: what the culler asks every node's nvidia-smi (csv, no header, no units)
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits"]
_ROW = re.compile(r"\s*(\d+)\s*,\s*([^,\s]+)\s*,\s*(\d+(?:\.\d+)?|\[N/A\]|\[Not Supported\])\s*,"
                  r"\s*(\d+(?:\.\d+)?|\[N/A\]|\[Not Supported\])\s*")


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    utilization: float | None  # percent; None: the driver did not say
    memory_mib: float | None


def parse_gpu_query(text: str) -> dict[int, GpuSample]:
    """`nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used --format=csv,noheader,nounits`
    -> {index: GpuSample}; ValueError on a line that is not that format (never a guess)."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _ROW.fullmatch(line)
        if not m:
            raise ValueError(f"nvidia-smi: not a GPU query row: {line[:120]!r}")
        number = lambda v: None if v.startswith("[") else float(v)  # noqa: E731
        out[int(m[1])] = GpuSample(int(m[1]), m[2], number(m[3]), number(m[4]))
    return out


@dataclass(frozen=True)
class CullerPolicy:
    idle_seconds: float = 3600.0
    warn_seconds: float = 900.0
    gpu_threshold: float = 5.0  # percent: at or above it a GPU is busy
    exempt_roles: tuple[str, ...] = ()
    exempt_users: tuple[str, ...] = ()
    exempt_groups: tuple[str, ...] = ()  # hub groups
    exempt_projects: tuple[str, ...] = ()  # SLURM accounts of quota projects
    keep_running_max: int = 3  # presses per server
    keep_running_period: float = 3600.0  # s between two presses


@dataclass(frozen=True)
class Server:
    """A ready hub server with its SLURM job, as the culler sees it."""

    user: str
    name: str  # "" default
    job_id: str
    started: float  # when the hub started it (epoch s)
    last_activity: float  # the hub's last_activity of this server (epoch s; 0 unknown)
    role: str = "user"
    groups: tuple[str, ...] = ()
    gpus: int = 0
    account: str = ""
    node: str = ""
    gpu_indexes: tuple[int, ...] = ()
    time_left: float | None = None  # s until the job's time limit


@dataclass
class Watch:
    """The culler's memory of one server (lost on restart: it then starts counting again)."""

    stop_at: float | None = None  # set by the warning: when the server is stopped if still idle
    kept: list[float] = field(default_factory=list)  # when "keep running" was pressed
    samples: deque = field(default_factory=lambda: deque(maxlen=720))  # (t, max utilisation %, memory MiB)
    idle_gpu_s: float = 0.0  # GPU-seconds between samples the culler saw below the threshold (this job)
    busy_gpu_s: float = 0.0  # ... and at or above it

    def add_sample(self, t: float, utilization: float, memory_mib: float) -> None:
        self.samples.append((t, utilization, memory_mib))


@dataclass
class IdleTally:
    """GPU-seconds the culler saw held idle (below the threshold) and busy, per hour, over the last
    `keep_hours`: what the cockpit's "idle GPU-hours" chart draws. Kept in a file across restarts."""

    hours: dict[int, list[float]] = field(default_factory=dict)  # hour start (epoch s) -> [idle, busy] GPU-s
    keep_hours: int = 168

    def add(self, start: float, end: float, gpu_count: int, idle: bool) -> None:
        """Count `gpu_count` GPUs held from `start` to `end`, split over the hours they cover."""
        t = start
        while t < end:
            hour = int(t // 3600 * 3600)
            upto = min(end, hour + 3600)
            self.hours.setdefault(hour, [0.0, 0.0])[0 if idle else 1] += gpu_count * (upto - t)
            t = upto
        self.trim()

    def trim(self) -> None:
        """Keep the newest `keep_hours` hours."""
        for hour in sorted(self.hours)[:max(0, len(self.hours) - self.keep_hours)]:
            del self.hours[hour]

    def rows(self) -> list[dict]:
        return [{"start": h, "idle_gpu_hours": round(v[0] / 3600, 4), "busy_gpu_hours": round(v[1] / 3600, 4)}
                for h, v in sorted(self.hours.items())]

    def to_json(self) -> dict:
        return {"version": 1, "hours": {str(h): v for h, v in sorted(self.hours.items())}}

    @classmethod
    def from_json(cls, data: object, keep_hours: int) -> "IdleTally":
        """The tally a file kept (a damaged or unknown file: an empty tally, never an error)."""
        tally = cls(keep_hours=keep_hours)
        if isinstance(data, dict) and data.get("version") == 1 and isinstance(data.get("hours"), dict):
            for key, value in data["hours"].items():
                try:
                    hour, idle, busy = int(key), float(value[0]), float(value[1])
                except (TypeError, ValueError, IndexError, KeyError):
                    continue
                if hour % 3600 == 0 and idle >= 0 and busy >= 0:
                    tally.hours[hour] = [idle, busy]
            tally.trim()
        return tally


def account_sample(watch: Watch, tally: IdleTally, t: float, utilization: float, gpu_count: int, threshold: float,
                   max_gap: float) -> tuple[float, float]:
    """Count the time since the job's previous sample as idle or busy by this sample (a gap longer than
    `max_gap`, e.g. the culler was down, counts only `max_gap`); (idle, busy) GPU-seconds added."""
    if not watch.samples or gpu_count <= 0:
        return 0.0, 0.0
    start = max(watch.samples[-1][0], t - max_gap)
    if t <= start:
        return 0.0, 0.0
    idle = utilization < threshold
    gpu_seconds = gpu_count * (t - start)
    if idle:
        watch.idle_gpu_s += gpu_seconds
    else:
        watch.busy_gpu_s += gpu_seconds
    tally.add(start, t, gpu_count, idle)
    return (gpu_seconds, 0.0) if idle else (0.0, gpu_seconds)


@dataclass(frozen=True)
class Verdict:
    state: str  # "exempt", "unknown" (no samples yet), "busy", "idle-warned", "stop"
    idle_since: float | None = None
    stop_at: float | None = None
    reason: str = ""


def exemption(server: Server, policy: CullerPolicy) -> str:
    """Why the server is never culled ("" when it may be)."""
    if server.user in policy.exempt_users:
        return f"user {server.user} is exempt"
    if server.role in policy.exempt_roles:
        return f"role {server.role} is exempt"
    groups = sorted(set(server.groups) & set(policy.exempt_groups))
    if groups:
        return f"group {groups[0]} is exempt"
    if server.account and server.account in policy.exempt_projects:
        return f"project {server.account} is exempt"
    return ""


def idle_since(server: Server, watch: Watch, threshold: float) -> float | None:
    """Since when the server has been idle (None: a GPU server without samples, never judged)."""
    since = max(server.started, server.last_activity, *(watch.kept or [0.0]))
    if server.gpus:
        if not watch.samples:
            return None
        since = max(since, watch.samples[0][0])  # nothing is known from before the first sample
        busy = [t for t, util, _mem in watch.samples if util >= threshold]
        if busy:
            since = max(since, busy[-1])
    return since


def judge(server: Server, watch: Watch, policy: CullerPolicy, now: float) -> Verdict:
    reason = exemption(server, policy)
    if reason:
        return Verdict("exempt", reason=reason)
    since = idle_since(server, watch, policy.gpu_threshold)
    if since is None:
        return Verdict("unknown", reason="no GPU samples yet")
    if now - since < policy.idle_seconds:
        return Verdict("busy", idle_since=since)
    what = (f"its GPUs stayed below {policy.gpu_threshold:g} % and JupyterLab saw no activity"
            if server.gpus else "JupyterLab saw no activity")
    minutes = (now - since) / 60
    stop_at = watch.stop_at if watch.stop_at is not None else now + policy.warn_seconds
    if now >= stop_at:
        return Verdict("stop", since, stop_at, f"idle: {what} for {minutes:.0f} min")
    return Verdict("idle-warned", since, stop_at, f"idle: {what} for {minutes:.0f} min")


def apply_verdict(watch: Watch, verdict: Verdict) -> bool:
    """Update the server's memory with the verdict; True when this is a new warning."""
    if verdict.state == "idle-warned":
        new = watch.stop_at is None
        if new:
            watch.stop_at = verdict.stop_at
        return new
    if verdict.state in ("busy", "exempt"):
        watch.stop_at = None
    return False


def keep_running_refusal(watch: Watch, policy: CullerPolicy, now: float) -> str:
    """Why a "keep running" press is refused ("" when it is taken)."""
    if len(watch.kept) >= policy.keep_running_max:
        return f"keep running was pressed {len(watch.kept)} times already, the most for one server"
    if watch.kept and now - watch.kept[-1] < policy.keep_running_period:
        wait = policy.keep_running_period - (now - watch.kept[-1])
        return f"keep running works once per {policy.keep_running_period / 60:g} min; again in {wait / 60:.0f} min"
    return ""


def job_samples(node_samples: Mapping[int, GpuSample], indexes: Iterable[int]) -> tuple[float, float] | None:
    """A job's (max utilisation %, memory MiB summed) over its GPUs on the node; None when a GPU is
    missing from the node's answer or reports no utilisation (then nothing is judged)."""
    utils, memory = [], 0.0
    for index in indexes:
        sample = node_samples.get(index)
        if sample is None or sample.utilization is None:
            return None
        utils.append(sample.utilization)
        memory += sample.memory_mib or 0.0
    return (max(utils), memory) if utils else None
