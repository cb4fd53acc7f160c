"""The spawn options form: pure rendering of what a user may choose (no I/O).

JupyterHub embeds the returned HTML fragment in its own `spawn.html` (Bootstrap 5), inside its
form. What the form offers is exactly what `options.parse_options` accepts for this user: the
images their role may run, GPU and runtime limits, the partitions and the routing rule, so the
page never offers a choice the hub then refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2

from container_catalog import owner_label

from .options import MIB_PER_GIB, SpawnLimits, format_duration, route_partition, scratch_most_gib
from .reservation_choice import ReservationChoice

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ImageChoice:
    """One container image as the form shows it."""

    id: str  # the choice id: a site or own entry's id, "<owner>/<id>" for a shared one
    name: str
    description: str = ""
    gpu: str = "optional"  # required | optional | none
    tags: tuple[tuple[str, str], ...] = ()
    section: str = "site"  # site | shared | user
    owner: str | None = None  # who added a user-defined entry (shown next to its badge)
    gpu_types: tuple[str, ...] = ()  # the GPU types it runs on; () any
    min_gpu_memory_gb: int = 0
    #: (name, title) of the web interfaces it offers, jupyterlab first
    interfaces: tuple[tuple[str, str], ...] = (("jupyterlab", "JupyterLab"),)

    @property
    def owner_label(self) -> str:
        return owner_label(self.section, self.owner)


@dataclass(frozen=True)
class FormDefaults:
    image: str
    gpus: int = 0
    runtime: str = "1:00"
    partition: str = ""  # "" = automatic routing
    reservation: str = ""
    gpu_type: str = ""  # "" = any type
    scratch_gib: str = ""  # "" = the site's default
    open_first: str = "jupyterlab"  # the interface the server opens at


def defaults_from_last_choice(last: Mapping[str, Any] | None, limits: SpawnLimits, images: list[ImageChoice],
                              reservations: Sequence[ReservationChoice] = ()) -> FormDefaults:
    """The user's previous options (JupyterHub keeps them) where still valid, else the site defaults.
    Without a valid last choice or default image, the first site image is preselected, never a
    user-defined one (the user picks that themselves). A reservation active now that names the user
    is preselected; else the last one, if it is still offered."""
    last = last or {}
    ids = {i.id for i in images}
    image = last.get("image") if last.get("image") in ids else (limits.default_image if limits.default_image in ids else "")
    if not image:
        image = next((i.id for i in images if i.section == "site"), "")
    gpus = last.get("gpus")
    gpus = int(gpus) if isinstance(gpus, (int, str)) and str(gpus).isdigit() and int(gpus) <= limits.max_gpus else 0
    if gpus == 0 and any(i.id == image and i.gpu == "required" for i in images):
        gpus = min(1, limits.max_gpus)  # as a start without options does: the image needs one
    runtime = str(last.get("runtime") or "") or _clock(limits.default_runtime_minutes)
    partitions = {p.name for p in limits.partitions}
    partition = last.get("partition") if last.get("partition") in partitions else ""
    offered = [r.name for r in reservations]
    active = next((r.name for r in reservations if r.active and r.names_user), "")  # surely theirs
    reservation = active or (last.get("reservation") if last.get("reservation") in offered else "")
    known_types = {t for types in limits.gpu_capacity.values() for t in types if t}
    gpu_type = last.get("gpu_type") if last.get("gpu_type") in known_types else ""
    offered = limits.interfaces(image) if image else ()
    open_first = last.get("open_first") if last.get("open_first") in offered else "jupyterlab"
    return FormDefaults(image=image, gpus=gpus, runtime=runtime[:16], partition=partition, reservation=reservation,
                        gpu_type=gpu_type, scratch_gib=_scratch_default(last.get("scratch_gib"), limits),
                        open_first=open_first)


def _scratch_default(last: Any, limits: SpawnLimits) -> str:
    """The last scratch size if it still fits anywhere, else the site's default lowered as parse lowers it."""
    if not limits.scratch:
        return ""
    most = scratch_most_gib(limits)
    if isinstance(last, (int, str)) and str(last).isdigit() and (most is None or int(last) <= most):
        return str(int(last))
    default = limits.default_scratch_gib if most is None else min(limits.default_scratch_gib, most)
    return str(default) if default else ""


def scratch_field(limits: SpawnLimits) -> dict[str, tuple[int | None, str]]:
    """{partition: (the most GiB of scratch a server there may ask for, None: no bound known; the
    field's hint)}: the form's maximum follows the user's limit and the partition's largest node."""
    field = {}
    default = limits.default_scratch_gib
    for partition in limits.partitions:
        most = scratch_most_gib(limits, partition.name)
        why = []
        if limits.max_scratch_gib is not None:
            why.append(f"your limit: {limits.max_scratch_gib:g} GiB")
        capacity = limits.scratch_capacity_mb.get(partition.name)
        if capacity is not None:
            why.append(f"the largest node of {partition.name}: {capacity // MIB_PER_GIB} GiB")
        if most is None:
            bound, asked = f"any size SLURM can place on {partition.name}", default
        else:
            bound, asked = f"up to {most} GiB on {partition.name} ({'; '.join(why)})", min(default, most)
        empty = f"{asked} GiB" if asked else "none, any node"
        field[partition.name] = (most, f"On the node's local SSD, {bound}. Empty: {empty}.")
    return field


def render_options_form(
    images: list[ImageChoice],
    limits: SpawnLimits,
    defaults: FormDefaults,
    template_dir: Path | None = None,
    quota_lines: list[str] | tuple[str, ...] = (),
    gpus: Mapping[str, Mapping[str, Any]] | None = None,
    gpus_age_seconds: float | None = None,
    estimate_url: str = "",
    reservations: Sequence[ReservationChoice] = (),
    now: float = 0.0,
    booking_url: str = "",
    scratch_line: str = "",
) -> str:
    """The form; `gpus`: gpu_inventory of the hub's view ({partition: {type: TypeCount}}), shown with
    its age, and the GPU type choice built from it (None: no snapshot yet, any type only)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    small = limits.routing_small_partition
    routing = {
        "small": small,
        "large": limits.routing_large_partition,
        "max_gpus": limits.interactive_max_gpus,
        "max_minutes": limits.interactive_max_runtime_minutes,
    }
    partition, reason = route_partition(defaults.gpus, limits.default_runtime_minutes, limits)
    scratch = scratch_field(limits) if limits.scratch else {}
    chosen = next((i for i in images if i.id == defaults.image), None)
    return env.get_template("options_form.html").render(
        images=images,
        limits=limits,
        defaults=defaults,
        partitions=limits.partitions,
        max_runtime=format_duration(limits.max_runtime_minutes),
        durations={p.name: format_duration(p.max_runtime_minutes) for p in limits.partitions},
        routing_json=json.dumps(routing),
        initial_routing=f"{partition.name}: {reason}",
        quota_lines=list(quota_lines),
        gpu_types=sorted({t for types in (gpus or {}).values() for t in types if t}),
        gpus_table=[(p, t or "any type", c) for p, types in (gpus or {}).items() for t, c in types.items()
                    if t or len(types) == 1],
        gpus_json=json.dumps({p: {t: c.to_dict() for t, c in types.items()} for p, types in (gpus or {}).items()}),
        gpus_age=_age_words(gpus_age_seconds),
        image_types_json=json.dumps(dict(limits.image_gpu_types)),
        estimate_url=estimate_url,
        reservations=[(r.name, r.words(now), r.active) for r in reservations],
        booking_url=booking_url,
        scratch_line=scratch_line,
        scratch=scratch.get(defaults.partition or partition.name, (None, "")),
        scratch_json=json.dumps(scratch),
        open_first=list(chosen.interfaces) if chosen else [("jupyterlab", "JupyterLab")],
    )


def _age_words(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"
