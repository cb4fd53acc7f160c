"""carme-catalog: the container catalog as a hub-managed service (REST API + a page in the hub's look).

    GET    /services/carme-catalog/                  page: containers your role may run, search by tag
    POST   /services/carme-catalog/                  the page's form: add a user-defined image
    GET    /services/carme-catalog/api/images        JSON list (?q=text&tag=name:value), filtered by role
    GET    /services/carme-catalog/api/images/ID     one entry (404 when you may not see it)
    POST   /services/carme-catalog/api/images        add a user-defined image (scope custom:carme-catalog:write)
    PATCH  /services/carme-catalog/api/images/ID     {"enabled": true|false} re-enable or disable your own entry
    DELETE /services/carme-catalog/api/images/ID     disable your own entry
    GET    /services/carme-catalog/api/problems      catalog files that failed to load (admins)

ID is the id users pick (`choice_id`): a site or own entry's id, or OWNER/ID for a shared entry
("dave/torch"; `?shared=1` with a plain id names the caller's own shared entry). Admins may
disable and re-enable other owners' entries.

Users reach it with a hub token or through the hub's OAuth (browser). Changing images needs the
custom scope `custom:carme-catalog:write` for the caller's own entries: the hub grants it to
power users and admins, and a site may grant it to single users or groups with a filter
(`custom:carme-catalog:write!user=dave`). User entries may name an image only (from the site's
allowed schemes and path prefixes, `{username}` in a prefix being the owner): binds, environment
variables and roles stay the site's to set, because a shared entry runs for everyone who starts
it; the maintainer is the owner, and a site entry's name is refused (HTTP 409). Pages and the
API show each user-defined entry's owner. The spawner reads the same directories, so an added
image can be started at once.

    python -m carme_services.catalog --help-all
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Float, List, Unicode

from carme_core.roles import ADMIN, POWER, role_of_model
from container_catalog import (
    EXAMPLE_CATALOG,
    GPU_MODES,
    CatalogEntry,
    CatalogSource,
    UserEntryConflict,
    UserEntryError,
    UserEntryForbidden,
    UserEntryNotFound,
    UserEntryRules,
    add_user_entry,
    disable_user_entry,
    enable_user_entry,
)

from .base import CarmeService, CarmeServiceHandler
from .wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec

NAME = "carme-catalog"
WRITE_SCOPE = "custom:carme-catalog:write"
USER_ENTRY_FIELDS = ("id", "name", "image", "description", "interface", "gpu", "tags", "maintainer", "shared")
FORM_FIELDS = ("id", "name", "image", "description", "gpu")
OWNER_ROLE_TTL = 10.0  # seconds a looked-up owner role is trusted


class CatalogService(CarmeService):
    name = NAME
    description = "The container catalog: what each role may run; power users add their own images."
    template_dir = Path(__file__).parent / "templates"

    catalog_dir = Unicode(str(EXAMPLE_CATALOG), config=True,
                          help="The site's catalog directory (YAML files; default: the example shipped with Carme).")
    user_dir = Unicode("/var/lib/carme/catalog-user", config=True,
                       help="Where user-defined entries are stored (written by this service, read by the spawner).")
    user_image_schemes = List(Unicode(), ["file"], config=True,
                              help="What users may add: file (.sif paths), docker, oras, library.")
    user_image_prefixes = List(Unicode(), [], config=True,
                               help="Path or URI prefixes users' images must start with, e.g. /opt/carme/images/ "
                                    "or /home/{username}/images/ ({username}: the entry's owner).")
    reload_interval = Float(5.0, config=True, help="Seconds between checks of the catalog files for changes.")

    def initialize(self, argv=None):
        super().initialize(argv)
        rules = UserEntryRules(tuple(self.user_image_schemes), tuple(self.user_image_prefixes))
        self.source = CatalogSource(self.catalog_dir, self.user_dir, interval=self.reload_interval, user_rules=rules)
        self._owner_roles: dict[str, tuple[str | None, float]] = {}

    async def owner_roles(self, owners: set[str]) -> dict[str, str | None]:
        """The current role of each owner of user-defined entries, from the hub (cached for
        OWNER_ROLE_TTL s): a demoted user's entries stop being served within that time."""
        now = time.monotonic()
        for owner in owners:
            known = self._owner_roles.get(owner)
            if known is not None and now - known[1] < OWNER_ROLE_TTL:
                continue
            try:
                model = await self.hub_client().get(f"users/{owner}")
                role = role_of_model(model, self.power_groups)
            except HTTPClientError as e:
                if e.code != 404:
                    self.log.warning("cannot read the role of %s from the hub (%s): hiding their images", owner, e)
                role = None
            self._owner_roles[owner] = (role, now)
        return {owner: self._owner_roles[owner][0] for owner in owners}

    def web_handlers(self):
        return [
            (r"/?", PageHandler, {}),
            (r"api/images/?", ImagesHandler, {}),
            (r"api/images/((?:[a-z_][a-z0-9_.-]{0,31}/)?[a-z0-9][a-z0-9_.-]{0,63})", ImageHandler, {}),
            (r"api/problems", ProblemsHandler, {}),
        ]

    async def run(self):
        self.log.info("catalog %s: %d entries", self.catalog_dir, len(self.source.current()))
        await super().run()


def entry_json(entry: CatalogEntry) -> dict:
    data = entry.to_dict()
    data.update(section=entry.section, owner=entry.owner, enabled=entry.enabled, choice_id=entry.choice_id)
    return data


def _status(error: UserEntryError) -> int:
    for kind, status in ((UserEntryForbidden, 403), (UserEntryNotFound, 404), (UserEntryConflict, 409)):
        if isinstance(error, kind):
            return status
    return 400


class CatalogHandler(CarmeServiceHandler):
    async def prepare(self):
        # the files' check (due every reload_interval) runs in a worker thread, never on the loop
        self.catalog = await asyncio.to_thread(self.source.current)
        self.owner_roles = await self.service.owner_roles({e.owner for e in self.catalog if e.owner})

    @property
    def source(self) -> CatalogSource:
        return self.service.source

    def visible(self):
        return self.catalog.visible_to(self.role, self.username,
                                       owner_may_share=lambda owner: self.owner_roles.get(owner) in (POWER, ADMIN))

    def searched(self, visible=None):
        visible = self.visible() if visible is None else visible
        return visible.search(self.get_argument("q", ""), self.get_argument("tag", None) or None)

    def may_write(self) -> bool:
        return self.has_scope(WRITE_SCOPE, user=self.username)

    def require_write(self) -> None:
        self.require(self.may_write(), "adding or changing images needs the power-user role "
                                       "(scope custom:carme-catalog:write for your own entries)")

    def add(self, body: dict) -> CatalogEntry:
        """Add the user-defined image in `body` for the caller; HTTPError naming the field otherwise."""
        self.require_write()
        refused = sorted(set(body) - set(USER_ENTRY_FIELDS))
        if refused:
            raise web.HTTPError(
                400, f"{refused[0]}: not allowed in a user-defined image; allowed: {', '.join(USER_ENTRY_FIELDS)}"
            )
        shared = body.pop("shared", False)
        if not isinstance(shared, bool):
            raise web.HTTPError(400, "shared: must be true or false")
        try:
            entry = add_user_entry(
                self.service.user_dir, self.username, body, shared=shared,
                allowed_schemes=self.service.user_image_schemes, allowed_prefixes=self.service.user_image_prefixes,
                reserved_ids=self.catalog.ids("site"), reserved_names=self.catalog.names("site"),
            )
        except UserEntryError as e:
            raise web.HTTPError(_status(e), f"{e.field}: {e.message}" if e.field else e.message) from None
        self.source.reload()
        self.log.info("%s added image %s (%s) to the %s section", self.username, entry.choice_id, entry.image,
                      entry.section)
        return entry


class PageHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        self.show()

    @web.authenticated
    def post(self):
        """The page's form (HubOAuth refuses a POST without the page's XSRF token with 403)."""
        form = {name: self.get_body_argument(name, "").strip() for name in FORM_FIELDS}
        body = {k: v for k, v in form.items() if v}
        body["shared"] = self.get_body_argument("shared", "") == "on"
        try:
            entry = self.add(body)
        except web.HTTPError as e:
            self.set_status(e.status_code)
            self.show(error=e.log_message, form=form)
            return
        self.redirect(f"{self.service.service_prefix}?added={quote(entry.choice_id, safe='/')}")

    def show(self, error: str = "", form: dict | None = None) -> None:
        visible = self.visible()
        entries = list(self.searched(visible))
        all_tags = sorted({f"{k}:{v}" if v else k for e in visible for k, v in e.tags})
        problems = self.catalog.problems if self.role == ADMIN else ()
        self.finish(
            self.render_page(
                "catalog.html",
                entries=[_PageEntry(e) for e in entries],
                problems=problems,
                query=self.get_argument("q", ""),
                tag=self.get_argument("tag", ""),
                all_tags=all_tags,
                may_write=self.may_write(),
                added=self.get_argument("added", ""),
                error=error,
                form=form or {},
                gpu_modes=GPU_MODES,
                prefixes=[p.replace("{username}", self.username) for p in self.service.user_image_prefixes],
            )
        )


class _PageEntry:
    """An entry as the page shows it."""

    def __init__(self, entry: CatalogEntry):
        self.id, self.name, self.description = entry.choice_id, entry.name, entry.description
        self.image, self.gpu, self.section, self.owner = entry.image, entry.gpu, entry.section, entry.owner
        self.owner_label = entry.owner_label
        self.tag_texts = [f"{k}: {v}" if v else k for k, v in entry.tags]


class ImagesHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        self.write_json({"role": self.role, "images": [entry_json(e) for e in self.searched()]})

    @web.authenticated
    def post(self):
        self.write_json(entry_json(self.add(self.json_body())), 201)


class ImageHandler(CatalogHandler):
    @web.authenticated
    def get(self, choice_id: str):
        entry = self.visible().get(choice_id, self.username)
        if entry is None:
            raise web.HTTPError(404, f"no image {choice_id!r:.100} is available to you")
        self.write_json(entry_json(entry))

    @web.authenticated
    def delete(self, choice_id: str):
        self.write_json(entry_json(self.set_enabled(choice_id, False)))

    @web.authenticated
    def patch(self, choice_id: str):
        body = self.json_body()
        if set(body) != {"enabled"} or not isinstance(body["enabled"], bool):
            raise web.HTTPError(400, 'enabled: send {"enabled": true} or {"enabled": false}, nothing else')
        self.write_json(entry_json(self.set_enabled(choice_id, body["enabled"])))

    def set_enabled(self, choice_id: str, enabled: bool) -> CatalogEntry:
        """Own entries by id; shared ones as OWNER/ID (or ?shared=1 and the caller's own id)."""
        self.require_write()
        owner, _, entry_id = choice_id.rpartition("/")
        shared = bool(owner) or self.get_argument("shared", "") in ("1", "true")
        who = {"owner": owner or self.username, "entry_id": entry_id, "shared": shared,
               "caller": self.username, "admin": self.role == ADMIN}
        try:
            if enabled:
                entry = enable_user_entry(self.service.user_dir, **who,
                                          allowed_schemes=self.service.user_image_schemes,
                                          allowed_prefixes=self.service.user_image_prefixes)
            else:
                entry = disable_user_entry(self.service.user_dir, **who)
        except UserEntryError as e:
            raise web.HTTPError(_status(e), e.message) from None
        self.source.reload()
        self.log.info("%s %s image %s in the %s section", self.username, "enabled" if enabled else "disabled",
                      entry.choice_id, entry.section)
        return entry


class ProblemsHandler(CatalogHandler):
    @web.authenticated
    def get(self):
        self.require(self.role == ADMIN, "catalog problems are shown to admins")
        problems = self.catalog.problems
        self.write_json({"problems": [{"path": p.path, "field": p.field, "message": p.message} for p in problems]})


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, app = checked_settings(CatalogService, settings)  # app: its defaults, for the spawner's settings
    return {
        "service": service_spec(CatalogService, settings, values, url=values.get("url", "http://127.0.0.1:10102"),
                                allowed_scopes=[WRITE_SCOPE], display=True),
        "custom_scopes": {WRITE_SCOPE: {"description": "Add and disable user-defined images in Carme's container catalog."}},
        "roles": [
            own_role(NAME, ["read:users"], "carme-catalog reads the current role of the owners of user-defined images.",
                     reads_slurm=False),
            admins_role(f"{NAME}-writers", settings, [WRITE_SCOPE],
                        "Power users and admins may add their own images to the catalog.", groups=settings.power_groups),
        ],
        # every user may use the catalog (the default 'user' role, extended)
        "user_scopes": [f"access:services!service={NAME}"],
        # the spawner reads the same catalog
        "config": {"CarmeSpawner": {"catalog_dir": app.catalog_dir, "user_catalog_dir": app.user_dir,
                                    "catalog_reload_interval": app.reload_interval,
                                    "user_image_schemes": list(app.user_image_schemes),
                                    "user_image_prefixes": list(app.user_image_prefixes)}},
    }


main = CatalogService.launch_instance

if __name__ == "__main__":
    main()
