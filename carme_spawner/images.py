"""The images a user may run, from the container catalog (or, without one, the `images` setting)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from container_catalog import Catalog, CatalogSource, UserEntryRules
from container_catalog.web_apps import DEFAULT_INTERFACES, WebInterface

from .form import ImageChoice


@dataclass(frozen=True)
class CatalogImage:
    """An image the user may run: what the form shows, and what the job runs."""

    choice: ImageChoice
    reference: str  # .sif path or docker:// / oras:// / library:// URI
    binds: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interfaces: tuple[WebInterface, ...] = DEFAULT_INTERFACES  # the web interfaces it offers, jupyterlab first


def images_from_setting(images: Mapping[str, str]) -> list[CatalogImage]:
    return [CatalogImage(ImageChoice(id=i, name=i), ref) for i, ref in sorted(images.items())]


def images_from_catalog(catalog: Catalog, role: str, username: str,
                        owner_may_share: Callable[[str], bool] | None = None) -> list[CatalogImage]:
    """The enabled, runnable entries `role` may use, with the user's own and shared entries, each
    under its choice id (a shared entry as "<owner>/<id>", so it never answers for a site id or the
    default image). `owner_may_share(owner)`: see `Catalog.visible_to` (owners no longer trusted)."""
    return [
        CatalogImage(
            ImageChoice(e.choice_id, e.name, e.description, e.gpu, e.tags, e.section, e.owner,
                        gpu_types=e.gpu_types, min_gpu_memory_gb=e.min_gpu_memory_gb,
                        interfaces=tuple((i.name, i.title) for i in e.interfaces)),
            e.image,
            binds=tuple(b.spec for b in e.binds),
            env=e.env,
            interfaces=e.interfaces,
        )
        for e in catalog.visible_to(role, username, runnable_only=True, owner_may_share=owner_may_share)
    ]


_sources: dict[tuple, CatalogSource] = {}


def shared_catalog(directory: str, user_directory: str | None, interval: float, log: logging.Logger,
                   user_rules: UserEntryRules | None = None) -> CatalogSource:
    """One watched catalog per hub process (and configuration); its problems go to the hub's log.
    The spawner reads it with `await asyncio.to_thread(source.current)`: the files are checked (when
    due) in a worker thread, so the hub's event loop never waits for a file system. `user_rules`: the site's
    rules for user-defined images, re-applied to the stored entries at every load."""
    key = (directory, user_directory, interval, user_rules)
    if key not in _sources:

        def report(new: Catalog, old: Catalog | None) -> None:
            known = set(old.problems) if old else set()
            for problem in new.problems:
                if problem not in known:
                    log.warning("Container catalog: %s (the other entries still load)", problem)

        _sources[key] = CatalogSource(directory, user_directory, interval=interval, on_reload=report,
                                      user_rules=user_rules)
    return _sources[key]
