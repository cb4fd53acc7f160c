"""Spawn options: the one place where user input for a server is checked.

Every spawn (options form, REST API, services) goes through :func:`parse_options`, which turns
untrusted input into a :class:`SpawnRequest` safe for a batch script, or raises :class:`OptionsError`.
"""

from __future__ import annotations

import contextvars
import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from container_catalog.fields import CHOICE_ID, CHOICE_ID_RULE
from container_catalog.image_reference import ImageReferenceError, check_image_reference

KNOWN_OPTIONS = ("gpu_type", "gpus", "image", "open_first", "partition", "project", "reservation", "runtime",
                 "scratch_gib")
JUPYTERLAB = "jupyterlab"  # the session's server, which every image offers (container_catalog.web_apps)

PARTITION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
RESERVATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
GPU_TYPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")  # SLURM gres types: a100, 1g.10gb, tesla_v100+nvlink
#: fields of the HTML form that carry the request, not spawn options (tornado's XSRF token)
FORM_TRANSPORT_FIELDS = ("_xsrf",)
IMAGE_ID = CHOICE_ID  # the catalog owns the rules for image ids and references

_DIGITS = re.compile(r"[0-9]{1,3}")
_GIB = re.compile(r"[0-9]{1,7}")
MIB_PER_GIB = 1024  # SLURM's TmpDisk and --tmp count MB of 2**20 bytes
_RUNTIME_MINUTES = re.compile(r"[0-9]{1,6}")
_RUNTIME_CLOCK = re.compile(r"([0-9]{1,4}):([0-5][0-9])(?::([0-5][0-9]))?")  # H:MM or H:MM:SS
_RUNTIME_DAYS = re.compile(r"([0-9]{1,3})-([01]?[0-9]|2[0-3])(?::([0-5][0-9]))?")  # D-HH or D-HH:MM
_MAX_RUNTIME_TEXT = 16


class OptionsError(ValueError):
    """Bad spawn option: .field names the field, str() says field + rule + limit."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PartitionPolicy:
    """What one SLURM partition allows a single server."""

    name: str
    max_gpus: int
    max_runtime_minutes: int
    description: str = ""


@dataclass(frozen=True)
class SpawnLimits:
    """Site limits for one user's server; check them once with :func:`validate_limits`."""

    partitions: tuple[PartitionPolicy, ...]
    max_gpus: int
    max_runtime_minutes: int
    default_runtime_minutes: int
    cpus_per_gpu: int
    memory_mb_per_gpu: int
    min_cpus: int
    min_memory_mb: int
    interactive_max_gpus: int
    interactive_max_runtime_minutes: int
    routing_small_partition: str
    routing_large_partition: str
    allowed_images: Mapping[str, str]
    default_image: str
    image_gpu: Mapping[str, str] = field(default_factory=dict)  # image id -> required | optional | none
    projects: tuple[str, ...] = ()  # the quota projects (SLURM accounts) the user is a member of
    #: partition -> {gpu type: the most GPUs of it one node has}, "" for any type; from the hub's
    #: view of the nodes. A partition missing here is not known: its GPUs are left to SLURM.
    gpu_capacity: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: image id -> the GPU types it may run on (from the catalog); missing or (): any type
    image_gpu_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: reservation name -> why SLURM would refuse this user's job in it (another user's), from the
    #: hub's view; a reservation missing here is left to SLURM
    refused_reservations: Mapping[str, str] = field(default_factory=dict)
    #: the site gives jobs a scratch (CarmeSpawner.scratch): only then may a server ask for its size
    scratch: bool = False
    #: the user's effective scratch_gib limit (GiB per server); None: no limit
    max_scratch_gib: float | None = None
    #: the size a server asks for when its user names none (GiB; 0: none, any node)
    default_scratch_gib: int = 0
    #: partition -> the largest TmpDisk (MiB) of its nodes, from the hub's view; a partition
    #: missing here is not known: its scratch sizes are left to SLURM
    scratch_capacity_mb: Mapping[str, int] = field(default_factory=dict)
    #: image id -> the names of the web interfaces it offers, jupyterlab first (from the catalog);
    #: missing: jupyterlab only
    image_interfaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        # freeze the containers too, so nothing changes after validation
        object.__setattr__(self, "partitions", tuple(self.partitions))
        object.__setattr__(self, "projects", tuple(self.projects))
        object.__setattr__(self, "allowed_images", MappingProxyType(dict(self.allowed_images)))
        object.__setattr__(self, "image_gpu", MappingProxyType(dict(self.image_gpu)))
        object.__setattr__(self, "gpu_capacity", MappingProxyType(
            {p: MappingProxyType(dict(types)) for p, types in self.gpu_capacity.items()}))
        object.__setattr__(self, "image_gpu_types", MappingProxyType(
            {i: tuple(types) for i, types in self.image_gpu_types.items()}))
        object.__setattr__(self, "refused_reservations", MappingProxyType(dict(self.refused_reservations)))
        object.__setattr__(self, "scratch_capacity_mb", MappingProxyType(dict(self.scratch_capacity_mb)))
        object.__setattr__(self, "image_interfaces", MappingProxyType(
            {i: tuple(names) for i, names in self.image_interfaces.items()}))

    def interfaces(self, image_id: str) -> tuple[str, ...]:
        """The web interfaces image `image_id` offers, jupyterlab first."""
        return self.image_interfaces.get(image_id) or (JUPYTERLAB,)

    def partition(self, name: str) -> PartitionPolicy | None:
        """The policy of the partition called `name`, if there is one."""
        return next((p for p in self.partitions if p.name == name), None)


_MINTING = contextvars.ContextVar("carme_minting_spawn_request", default=False)


@dataclass(frozen=True)
class SpawnRequest:
    """A checked request for one server job: only `parse_options` makes one, so holding one is the
    proof that its values passed the checks (the batch script trusts it as it is)."""

    gpus: int
    cpus: int
    memory_mb: int
    partition: str
    runtime_minutes: int
    reservation: str | None
    image_id: str
    image: str
    routing_reason: str
    project: str | None = None  # the job's SLURM account; None: the user's own
    gpu_type: str = ""  # a SLURM gres type (--gres=gpu:TYPE:N); "" any type
    scratch_gib: int = 0  # the job's scratch size (--tmp, a node with that much TmpDisk); 0: none asked
    open_first: str = JUPYTERLAB  # the image's interface the server opens at (its default URL)

    def __post_init__(self):
        if not _MINTING.get():
            raise TypeError("a SpawnRequest is made by parse_options only (that is the proof its values were checked)")


def parse_options(raw: Mapping[str, Any], limits: SpawnLimits) -> SpawnRequest:
    """Check untrusted spawn options against `limits`; raise OptionsError on the first problem."""
    if not isinstance(raw, Mapping):
        raise OptionsError("options", f"must be a mapping of option names to values, got {_describe(raw)}")
    for key in raw:
        if key not in KNOWN_OPTIONS:
            field = key if isinstance(key, str) and key.isprintable() and len(key) <= 40 else _describe(key)
            raise OptionsError(field, f"unknown option; allowed: {', '.join(KNOWN_OPTIONS)}")
    given = {key: value for key, value in raw.items() if value is not None and value != ""}

    image_id = _parse_image(given.get("image", limits.default_image), limits)
    # no GPU count given: what the image needs (one for an image that requires a GPU), so a start
    # without options runs the site's default image
    gpus = _parse_gpus(given.get("gpus", 1 if limits.image_gpu.get(image_id) == "required" else 0))
    runtime = _parse_runtime(given.get("runtime", limits.default_runtime_minutes))
    _check_user_limits(gpus, runtime, limits)
    if "partition" in given:
        partition = _parse_partition(given["partition"], limits)
        reason = "requested explicitly"
    else:
        partition, reason = route_partition(gpus, runtime, limits)
    _check_partition_limits(gpus, runtime, partition)
    reservation = _parse_reservation(given.get("reservation"))
    if reservation in limits.refused_reservations:
        raise OptionsError("reservation", limits.refused_reservations[reservation])
    _check_image_gpus(image_id, gpus, limits)
    gpu_type = _check_gpu_type(_parse_gpu_type(given.get("gpu_type")), gpus, partition.name, image_id, limits)
    project = _parse_project(given.get("project"), limits)
    scratch_gib = _parse_scratch(given.get("scratch_gib"), partition.name, limits)
    open_first = _parse_open_first(given.get("open_first"), image_id, limits)

    minting = _MINTING.set(True)
    try:
        return SpawnRequest(
            gpus=gpus,
            cpus=max(limits.min_cpus, gpus * limits.cpus_per_gpu),
            memory_mb=max(limits.min_memory_mb, gpus * limits.memory_mb_per_gpu),
            partition=partition.name,
            runtime_minutes=runtime,
            reservation=reservation,
            image_id=image_id,
            image=limits.allowed_images[image_id],
            routing_reason=reason,
            project=project,
            gpu_type=gpu_type,
            scratch_gib=scratch_gib,
            open_first=open_first,
        )
    finally:
        _MINTING.reset(minting)


def options_from_form_data(formdata: Mapping[str, list[str]]) -> dict:
    """Form data ({name: [str, ...]}) as options: first non-empty value of known keys, others as-is."""
    options = {}
    for key, values in formdata.items():
        if key in FORM_TRANSPORT_FIELDS:
            continue
        if key not in KNOWN_OPTIONS:
            options[key] = values
            continue
        value = values if isinstance(values, str) else (values[0] if values else "")
        if not (isinstance(value, str) and value.strip() == ""):
            options[key] = value
    return options


def scratch_most_gib(limits: SpawnLimits, partition: str | None = None) -> int | None:
    """The most GiB of scratch a server may ask for: the user's limit and what the largest node of
    `partition` can give (None: of any partition, for the form); None when neither bounds it."""
    bounds = [] if limits.max_scratch_gib is None else [math.floor(limits.max_scratch_gib)]
    names = [p.name for p in limits.partitions] if partition is None else [partition]
    capacity = [limits.scratch_capacity_mb.get(name) for name in names]
    if capacity and None not in capacity:  # a partition the view does not know: SLURM decides
        bounds.append(max(capacity) // MIB_PER_GIB)
    return min(bounds) if bounds else None


def format_runtime(minutes: int) -> str:
    """SLURM's --time value for `minutes`: "D-HH:MM:00" or "HH:MM:00"."""
    if type(minutes) is not int or minutes < 1:
        raise ValueError(f"runtime must be a whole number of minutes >= 1, got {minutes!r}")
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock


def format_duration(minutes: int) -> str:
    """`minutes` in plain words: "45 min", "1 h 30 min", "7 days"."""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} day" + ("s" if days != 1 else "")] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{mins} min"] if mins or not parts else []
    return " ".join(parts)


def validate_image_reference(ref: str) -> str:
    """Return `ref` if it is an absolute .sif path or a docker/oras/library URI; else ValueError."""
    try:
        return check_image_reference(ref)
    except ImageReferenceError as e:
        raise ValueError(f"image reference {e}") from None


def validate_limits(limits: SpawnLimits) -> SpawnLimits:
    """Return `limits` if they are consistent; else ValueError naming the field."""
    if not limits.partitions:
        raise ValueError("partitions: at least one partition is needed")
    names = [p.name for p in limits.partitions]
    for i, policy in enumerate(limits.partitions):
        field = f"partitions[{i}]"
        if not isinstance(policy, PartitionPolicy):
            raise ValueError(f"{field}: must be a PartitionPolicy")
        if not isinstance(policy.name, str) or not PARTITION_NAME.fullmatch(policy.name):
            raise ValueError(f"{field}.name: must match [A-Za-z0-9_-]{{1,64}}, got {_describe(policy.name)}")
        if policy.name in names[:i]:
            raise ValueError(f"{field}.name: partition {policy.name!r} is listed twice")
        _require_int(f"{field}.max_gpus", policy.max_gpus, 0)
        _require_int(f"{field}.max_runtime_minutes", policy.max_runtime_minutes, 1)
    for name in ("max_gpus", "cpus_per_gpu", "memory_mb_per_gpu", "interactive_max_gpus"):
        _require_int(name, getattr(limits, name), 0)
    for name in ("max_runtime_minutes", "default_runtime_minutes", "min_cpus", "min_memory_mb",
                 "interactive_max_runtime_minutes"):
        _require_int(name, getattr(limits, name), 1)
    if limits.default_runtime_minutes > limits.max_runtime_minutes:
        raise ValueError("default_runtime_minutes: must not be above max_runtime_minutes")
    for name in ("routing_small_partition", "routing_large_partition"):
        if getattr(limits, name) not in names:
            raise ValueError(f"{name}: {getattr(limits, name)!r} is not one of the partitions {names}")
    for image_id, ref in limits.allowed_images.items():
        if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id):
            raise ValueError(f"allowed_images: id {_describe(image_id)} must be {CHOICE_ID_RULE}")
        try:
            validate_image_reference(ref)
        except ValueError as e:
            raise ValueError(f"allowed_images[{image_id!r}]: {e}") from None
    for image_id, names in limits.image_interfaces.items():
        if not names or names[0] != JUPYTERLAB or len(set(names)) != len(names):
            raise ValueError(f"image_interfaces[{image_id!r}]: must list jupyterlab first and no interface twice, "
                             f"got {list(names)}")
    _require_int("default_scratch_gib", limits.default_scratch_gib, 0)
    most = limits.max_scratch_gib
    if most is not None and (type(most) not in (int, float) or not 0 <= most < math.inf):
        raise ValueError(f"max_scratch_gib: must be a number of GiB >= 0 or None, got {_describe(most)}")
    for name, mb in limits.scratch_capacity_mb.items():
        _require_int(f"scratch_capacity_mb[{name!r}]", mb, 0)
    if limits.default_image not in limits.allowed_images:
        raise ValueError(f"default_image: {limits.default_image!r} is not in allowed_images")
    return limits


def _parse_gpus(value: Any) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip(" ")):
        value = int(value.strip(" "))
    if type(value) is not int:
        raise OptionsError("gpus", f"must be a whole number of GPUs, 0 or more (got {_describe(value)})")
    if value < 0:
        raise OptionsError("gpus", f"must be 0 or more (got {_describe(value)})")
    return value


def _parse_runtime(value: Any) -> int:
    minutes = None
    if type(value) is int:
        minutes = value
    elif isinstance(value, str) and len(value) <= _MAX_RUNTIME_TEXT:
        minutes = _runtime_text_minutes(value.strip(" "))
    if minutes is None:
        raise OptionsError("runtime", f"use minutes or H:MM, D-HH:MM (got {_describe(value)})")
    if minutes < 1:
        raise OptionsError("runtime", f"must be at least 1 minute (got {_describe(value)})")
    return minutes


def _runtime_text_minutes(text: str) -> int | None:
    if match := _RUNTIME_MINUTES.fullmatch(text):
        return int(match[0])
    if match := _RUNTIME_CLOCK.fullmatch(text):
        hours, mins, secs = int(match[1]), int(match[2]), int(match[3] or 0)
        return hours * 60 + mins + (1 if secs else 0)
    if match := _RUNTIME_DAYS.fullmatch(text):
        days, hours, mins = int(match[1]), int(match[2]), int(match[3] or 0)
        return (days * 24 + hours) * 60 + mins
    return None


def _parse_partition(value: Any, limits: SpawnLimits) -> PartitionPolicy:
    policy = limits.partition(value) if isinstance(value, str) else None
    if policy is None:
        choices = ", ".join(p.name for p in limits.partitions)
        raise OptionsError("partition", f"unknown partition {_describe(value)}; choose one of {choices}")
    return policy


def route_partition(gpus: int, runtime: int, limits: SpawnLimits) -> tuple[PartitionPolicy, str]:
    """The partition a request without an explicit one goes to, and why (in plain words)."""
    small = limits.routing_small_partition
    max_gpus, max_minutes = limits.interactive_max_gpus, limits.interactive_max_runtime_minutes
    fits = gpus <= max_gpus and runtime <= max_minutes
    bounds = f"<= {_gpus_text(max_gpus)}, <= {format_duration(max_minutes)}"
    verdict = "fits" if fits else "exceeds"
    reason = f"{_gpus_text(gpus)} for {format_duration(runtime)} {verdict} the {small} limits ({bounds})"
    return limits.partition(small if fits else limits.routing_large_partition), reason  # see validate_limits


def _check_user_limits(gpus: int, minutes: int, limits: SpawnLimits) -> None:
    if gpus > limits.max_gpus:
        raise OptionsError("gpus", f"{_describe(gpus)} is above your limit of {limits.max_gpus}")
    if minutes > limits.max_runtime_minutes:
        too_long = format_duration(minutes) if minutes < 10**9 else "a very long runtime"
        limit = format_duration(limits.max_runtime_minutes)
        raise OptionsError("runtime", f"{too_long} is above your limit of {limit}")


def _check_partition_limits(gpus: int, minutes: int, partition: PartitionPolicy) -> None:
    if gpus > partition.max_gpus:
        message = f"at most {partition.max_gpus} on partition {partition.name} (asked for {gpus})"
        raise OptionsError("gpus", message)
    if minutes > partition.max_runtime_minutes:
        limit, asked = format_duration(partition.max_runtime_minutes), format_duration(minutes)
        raise OptionsError("runtime", f"at most {limit} on partition {partition.name} (asked for {asked})")


def _parse_scratch(value: Any, partition: str, limits: SpawnLimits) -> int:
    """The scratch size (GiB) of the job: the one asked for, checked against the user's limit and the
    largest node of `partition`; else the site's default, lowered to what fits (0: none asked)."""
    if value is None:
        most = scratch_most_gib(limits, partition) if limits.scratch else 0
        return limits.default_scratch_gib if most is None else min(limits.default_scratch_gib, most)
    if isinstance(value, str) and _GIB.fullmatch(value.strip(" ")):
        value = int(value.strip(" "))
    if type(value) is not int or value < 0:
        raise OptionsError("scratch_gib", f"must be a whole number of GiB, 0 or more (got {_describe(value)})")
    if value == 0:
        return 0  # none asked: any node
    if not limits.scratch:
        raise OptionsError("scratch_gib", f"servers get no scratch on this site (asked for {_describe(value)} GiB)")
    limit = limits.max_scratch_gib
    if limit is not None and value > limit:
        raise OptionsError("scratch_gib", f"{_describe(value)} GiB is above your limit of {limit:g} GiB "
                                          "of job scratch per server")
    capacity = limits.scratch_capacity_mb.get(partition)  # None: not known, SLURM decides
    if capacity is not None and value * MIB_PER_GIB > capacity:
        most = f"at most {capacity // MIB_PER_GIB} GiB fit" if capacity >= MIB_PER_GIB else "no scratch size fits"
        raise OptionsError("scratch_gib", f"{most} on the local SSD of the largest node of partition {partition} "
                                          f"(its TmpDisk: {capacity} MB), and a server runs on one node "
                                          f"(asked for {value} GiB)")
    return value


def _parse_project(value: Any, limits: SpawnLimits) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in limits.projects:
        mine = f"your projects: {', '.join(limits.projects)}" if limits.projects else "you are in no project"
        raise OptionsError("project", f"{_describe(value)} is not one of your projects ({mine})")
    return value


def _parse_reservation(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not RESERVATION_NAME.fullmatch(value):
        rule = "letters, digits, '_', '.', '-', starting with a letter or digit, at most 64 characters"
        raise OptionsError("reservation", f"must be a reservation name: {rule} (got {_describe(value)})")
    return value


def _parse_image(value: Any, limits: SpawnLimits) -> str:
    if not isinstance(value, str) or not IMAGE_ID.fullmatch(value) or value not in limits.allowed_images:
        choices = ", ".join(sorted(limits.allowed_images)[:12]) or "none"
        raise OptionsError("image", f"{_describe(value)} is not an image available to you; choose one of: {choices}")
    return value


def _parse_open_first(value: Any, image_id: str, limits: SpawnLimits) -> str:
    offered = limits.interfaces(image_id)
    if value is None:
        return JUPYTERLAB
    if not isinstance(value, str) or value not in offered:
        raise OptionsError("open_first", f"{_describe(value)} is not an interface of image {image_id}; "
                                         f"choose one of: {', '.join(offered)}")
    return value


def _check_image_gpus(image_id: str, gpus: int, limits: SpawnLimits) -> None:
    policy = limits.image_gpu.get(image_id, "optional")
    if policy == "required" and gpus == 0:
        raise OptionsError("gpus", f"image {image_id} needs at least 1 GPU")
    if policy == "none" and gpus > 0:
        raise OptionsError("gpus", f"image {image_id} cannot use GPUs; choose 0 (asked for {gpus})")


def _parse_gpu_type(value: Any) -> str:
    if value is None or value == "any":
        return ""
    if not isinstance(value, str) or not GPU_TYPE.fullmatch(value):
        rule = "a GPU type such as a100 or 1g.10gb: letters, digits, '_', '.', '+', '-'"
        raise OptionsError("gpu_type", f"must be {rule}, or any (got {_describe(value)})")
    return value


def _check_gpu_type(gpu_type: str, gpus: int, partition: str, image_id: str, limits: SpawnLimits) -> str:
    """The GPU type the job asks for ("" any), checked against the image and the partition's nodes."""
    if gpus == 0:
        if gpu_type:
            raise OptionsError("gpu_type", f"a GPU type needs at least 1 GPU (gpus is 0, type {gpu_type})")
        return ""
    capacity = limits.gpu_capacity.get(partition)  # None: not known, SLURM decides
    image_types = limits.image_gpu_types.get(image_id, ())
    if image_types:
        runnable = [t for t in image_types if capacity is None or t in capacity]
        if not gpu_type and len(runnable) == 1:
            gpu_type = runnable[0]  # "any" that the image allows only one way
        if gpu_type not in image_types:
            raise OptionsError("gpu_type", f"image {image_id} runs on {', '.join(image_types)} GPUs only"
                                           f"{'; choose one' if not gpu_type else f' (asked for {gpu_type})'}")
    if capacity is None:
        return gpu_type
    if gpu_type not in capacity:
        there = ", ".join(t for t in capacity if t) or "no typed GPUs"
        where = f"no {gpu_type} GPUs" if gpu_type else "no GPUs"
        raise OptionsError("gpu_type", f"{where} on partition {partition} (there: {there})")
    most = capacity[gpu_type]
    if gpus > most:
        kind = f"{gpu_type} GPUs" if gpu_type else "GPUs"
        raise OptionsError("gpus", f"at most {most} {kind} fit on one node of partition {partition}, "
                                   f"and a server runs on one node (asked for {gpus})")
    return gpu_type


def _require_int(field: str, value: Any, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{field}: must be a whole number >= {minimum}, got {_describe(value)}")


def _gpus_text(gpus: int) -> str:
    return f"{gpus} GPU" + ("" if gpus == 1 else "s")


def _describe(value: Any) -> str:
    """A short, single-line description of an untrusted value for error messages."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**12 else "a very large number"
    if isinstance(value, str):
        text = repr(value[:40])  # repr escapes newlines and other control characters
        return text if len(value) <= 40 else text[:-1] + "..." + text[-1]
    return f"a value of type {type(value).__name__}"
