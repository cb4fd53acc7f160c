"""carme-catalog: the container catalog as a hub-managed service (REST API + a page in the hub's look).

    GET    /services/carme-catalog/                  page: containers your role may run, search by tag
    GET    /services/carme-catalog/api/images        JSON list (?q=text&tag=name:value), filtered by role
    GET    /services/carme-catalog/api/images/ID     one entry (404 when you may not see it)
    POST   /services/carme-catalog/api/images        add a user-defined image (scope custom:carme-catalog:write)
    DELETE /services/carme-catalog/api/images/ID     disable your own entry (?shared=1 for the shared section)
    GET    /services/carme-catalog/api/problems      catalog files that failed to load (admins)

Users reach it with a hub token or through the hub's OAuth (browser). Adding images needs the
custom scope `custom:carme-catalog:write`, which the hub grants to power users and admins. User
entries may name an image only (from the site's allowed schemes and path prefixes): binds and
environment variables stay the site's to set, because a shared entry runs for everyone who
starts it. The spawner reads the same directories, so an added image can be started at once.

    python -m carme_services.catalog --catalog-dir DIR --user-dir DIR [--scheme file --prefix /opt/images/]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from tornado import web

from container_catalog import (
    CatalogEntry,
    CatalogSource,
    UserEntryConflict,
    UserEntryError,
    UserEntryForbidden,
    UserEntryNotFound,
    add_user_entry,
    disable_user_entry,
    may_add_user_entries,
)

from .base import CarmeServiceHandler, ServiceEnvironment, make_app

WRITE_SCOPE = "custom:carme-catalog:write"
SERVICE_NAME = "carme-catalog"
USER_ENTRY_FIELDS = ("id", "name", "image", "description", "interface", "gpu", "tags", "maintainer", "shared")
TEMPLATES = Path(__file__).parent / "templates"
log = logging.getLogger(SERVICE_NAME)


def entry_json(entry: CatalogEntry) -> dict:
    data = entry.to_dict()
    data.update(section=entry.section, owner=entry.owner, enabled=entry.enabled)
    return data


class CatalogHandler(CarmeServiceHandler):
    def initialize(self, source: CatalogSource, options: argparse.Namespace):
        self.source = source
        self.options = options

    @property
    def username(self) -> str:
        return (self.current_user or {}).get("name", "")

    def visible(self):
        return self.source.current().visible_to(self.role, self.username)

    def searched(self, visible=None):
        visible = self.visible() if visible is None else visible
        return visible.search(self.get_argument("q", ""), self.get_argument("tag", None) or None)


class PageHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        visible = self.visible()
        entries = list(self.searched(visible))
        all_tags = sorted({f"{k}:{v}" if v else k for e in visible for k, v in e.tags})
        problems = self.source.current().problems if self.role == "admin" else ()
        self.finish(
            self.render_page(
                "catalog.html",
                entries=[_PageEntry(e) for e in entries],
                problems=problems,
                query=self.get_argument("q", ""),
                tag=self.get_argument("tag", ""),
                all_tags=all_tags,
            )
        )


class _PageEntry:
    """An entry as the page shows it."""

    def __init__(self, entry: CatalogEntry):
        self.id, self.name, self.description = entry.id, entry.name, entry.description
        self.image, self.gpu, self.section, self.owner = entry.image, entry.gpu, entry.section, entry.owner
        self.tag_texts = [f"{k}: {v}" if v else k for k, v in entry.tags]


class ImagesHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        self.write_json({"role": self.role, "images": [entry_json(e) for e in self.searched()]})

    @web.authenticated
    def post(self):
        self.require(
            self.has_scope(WRITE_SCOPE) and may_add_user_entries(self.role),
            "adding images needs the power-user role (scope custom:carme-catalog:write)",
        )
        body = self.json_body()
        refused = sorted(set(body) - set(USER_ENTRY_FIELDS))
        if refused:
            raise web.HTTPError(
                400, f"{refused[0]}: not allowed in a user-defined image; allowed: {', '.join(USER_ENTRY_FIELDS)}"
            )
        shared = body.pop("shared", False)
        if not isinstance(shared, bool):
            raise web.HTTPError(400, "shared: must be true or false")
        catalog = self.source.current()
        try:
            entry = add_user_entry(
                self.options.user_dir,
                self.username,
                body,
                shared=shared,
                allowed_schemes=self.options.scheme,
                allowed_prefixes=self.options.prefix,
                reserved_ids=catalog.ids("site"),
            )
        except UserEntryError as e:
            raise web.HTTPError(_status(e), f"{e.field}: {e.message}" if e.field else e.message) from None
        self.source.reload()
        log.info("%s added image %s (%s) to the %s section", self.username, entry.id, entry.image, entry.section)
        self.write_json(entry_json(entry), 201)


class ImageHandler(CatalogHandler):
    @web.authenticated
    def get(self, entry_id: str):
        entry = self.visible().get(entry_id, self.username)
        if entry is None:
            raise web.HTTPError(404, f"no image {entry_id!r:.70} is available to you")
        self.write_json(entry_json(entry))

    @web.authenticated
    def delete(self, entry_id: str):
        self.require(self.has_scope(WRITE_SCOPE), "changing images needs the scope custom:carme-catalog:write")
        shared = self.get_argument("shared", "") in ("1", "true")
        try:
            entry = disable_user_entry(
                self.options.user_dir, self.username, entry_id, shared=shared, admin=self.role == "admin"
            )
        except UserEntryError as e:
            raise web.HTTPError(_status(e), e.message) from None
        self.source.reload()
        log.info("%s disabled image %s in the %s section", self.username, entry.id, entry.section)
        self.write_json(entry_json(entry))


class ProblemsHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        self.require(self.role == "admin", "catalog problems are shown to admins")
        self.write_json({"problems": [{"path": p.path, "field": p.field, "message": p.message} for p in self.source.current().problems]})


def _status(error: UserEntryError) -> int:
    for kind, status in ((UserEntryForbidden, 403), (UserEntryNotFound, 404), (UserEntryConflict, 409)):
        if isinstance(error, kind):
            return status
    return 400


def make_catalog_app(env: ServiceEnvironment, source: CatalogSource, options: argparse.Namespace) -> web.Application:
    kwargs = {"source": source, "options": options}
    return make_app(
        env,
        [
            (r"/?", PageHandler, kwargs),
            (r"api/images/?", ImagesHandler, kwargs),
            (r"api/images/([a-z0-9][a-z0-9_.-]{0,63})", ImageHandler, kwargs),
            (r"api/problems", ProblemsHandler, kwargs),
        ],
        TEMPLATES,
        power_groups=tuple(options.power_group),
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m carme_services.catalog", description=__doc__.splitlines()[0])
    parser.add_argument("--catalog-dir", required=True, help="the site's catalog directory")
    parser.add_argument("--user-dir", required=True, help="where user-defined entries are stored (writable)")
    parser.add_argument("--scheme", action="append", default=None, help="image scheme users may add (file, docker, oras, library)")
    parser.add_argument("--prefix", action="append", default=None, help="path/URI prefix users' images must start with")
    parser.add_argument("--power-group", action="append", default=None, help="hub group whose members are power users")
    parser.add_argument("--reload-interval", type=float, default=5.0)
    options = parser.parse_args(argv)
    options.scheme = options.scheme or ["file"]
    options.prefix = options.prefix or []
    options.power_group = options.power_group or ["power"]
    return options


async def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    options = parse_args(argv)
    env = ServiceEnvironment.from_env()
    source = CatalogSource(options.catalog_dir, options.user_dir, interval=options.reload_interval)
    make_catalog_app(env, source, options).listen(env.port, env.host)
    log.info("carme-catalog serving %s at %s (%d entries)", options.catalog_dir, env.url, len(source.current()))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
