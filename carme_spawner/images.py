"""The images a user may run, from the container catalog (or, without one, the `images` setting)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from container_catalog import Catalog, CatalogSource

from .form import ImageChoice


@dataclass(frozen=True)
class CatalogImage:
    """An image the user may run: what the form shows, and what the job runs."""

    choice: ImageChoice
    reference: str  # .sif path or docker:// / oras:// / library:// URI
    binds: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def images_from_setting(images: Mapping[str, str]) -> list[CatalogImage]:
    return [CatalogImage(ImageChoice(id=i, name=i), ref) for i, ref in sorted(images.items())]


def images_from_catalog(catalog: Catalog, role: str, username: str) -> list[CatalogImage]:
    """The enabled, runnable entries `role` may use, with the user's own and shared entries."""
    return [
        CatalogImage(
            ImageChoice(e.id, e.name, e.description, e.gpu, e.tags, e.section),
            e.image,
            binds=tuple(b.spec for b in e.binds),
            env=e.env,
        )
        for e in catalog.visible_to(role, username, runnable_only=True)
    ]


_sources: dict[tuple, CatalogSource] = {}


def shared_catalog(directory: str, user_directory: str | None, interval: float, log: logging.Logger) -> CatalogSource:
    """One watched catalog per hub process (and configuration); its problems go to the hub's log.
    Called from the hub's event loop: the files are checked in a worker thread (`start_watching`),
    so reading the catalog (`latest()`) never waits for a file system."""
    key = (directory, user_directory, interval)
    if key not in _sources:

        def report(new: Catalog, old: Catalog | None) -> None:
            known = set(old.problems) if old else set()
            for problem in new.problems:
                if problem not in known:
                    log.warning("Container catalog: %s (the other entries still load)", problem)

        _sources[key] = CatalogSource(directory, user_directory, interval=interval, on_reload=report)
    _sources[key].start_watching()
    return _sources[key]
