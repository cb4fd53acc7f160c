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
from typing import Any, Mapping

import jinja2

from container_catalog import owner_label

from .options import SpawnLimits, format_duration, route_partition

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


def defaults_from_last_choice(last: Mapping[str, Any] | None, limits: SpawnLimits, images: list[ImageChoice]) -> FormDefaults:
    """The user's previous options (JupyterHub keeps them) where still valid, else the site defaults.
    Without a valid last choice or default image, the first site image is preselected, never a
    user-defined one (the user picks that themselves)."""
    last = last or {}
    ids = {i.id for i in images}
    image = last.get("image") if last.get("image") in ids else (limits.default_image if limits.default_image in ids else "")
    if not image:
        image = next((i.id for i in images if i.section == "site"), "")
    gpus = last.get("gpus")
    gpus = int(gpus) if isinstance(gpus, (int, str)) and str(gpus).isdigit() and int(gpus) <= limits.max_gpus else 0
    runtime = str(last.get("runtime") or "") or _clock(limits.default_runtime_minutes)
    partitions = {p.name for p in limits.partitions}
    partition = last.get("partition") if last.get("partition") in partitions else ""
    reservation = str(last.get("reservation") or "")[:64]
    return FormDefaults(image=image, gpus=gpus, runtime=runtime[:16], partition=partition, reservation=reservation)


def render_options_form(
    images: list[ImageChoice],
    limits: SpawnLimits,
    defaults: FormDefaults,
    template_dir: Path | None = None,
    quota_lines: list[str] | tuple[str, ...] = (),
) -> str:
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
    )


def _clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"
