"""Carme's container catalog: load, validate and watch the images users may run; filter them by role.

Pure and self-contained: imports nothing from other Carme packages but `carme_core.roles` (the
spawner and the services import it). Typical use::

    rules = UserEntryRules(schemes=("file",), prefixes=("/home/{username}/images/",))
    source = CatalogSource("/etc/carme/catalog", "/var/lib/carme/catalog-user", interval=5,
                           user_rules=rules)
    view = source.current().visible_to(role, username, runnable_only=True,
                                       owner_may_share=lambda owner: owner in power_users)
    entry = view.get("pytorch", username)       # None: unknown or not allowed for this user
    shared = view.get("dave/torch", username)   # a shared entry is always picked as <owner>/<id>

Users pick entries by `CatalogEntry.choice_id` (the id, or "<owner>/<id>" for a shared entry;
`fields.CHOICE_ID` is its rule), so a shared entry can never stand in for a site id.

The example catalog shipped with the package is at :data:`EXAMPLE_CATALOG`.
"""

from pathlib import Path

from .access import ROLES
from .catalog import Catalog
from .image_reference import (
    IMAGE_SCHEMES,
    ImageReferenceError,
    UserEntryRules,
    check_image_reference,
    check_user_image_reference,
)
from .loader import load_catalog, read_entries_file
from .schema import (
    RUNNABLE_INTERFACES,
    SECTIONS,
    owner_label,
    BindMount,
    CatalogEntry,
    CatalogProblem,
    InvalidEntry,
    parse_entry,
)
from .fields import CHOICE_ID, GPU_MODES, INTERFACES
from .user_entries import (
    UserEntryConflict,
    UserEntryError,
    UserEntryForbidden,
    UserEntryNotFound,
    add_user_entry,
    disable_user_entry,
    enable_user_entry,
)
from .watcher import CatalogSource
from .web_apps import BUILTIN_INTERFACES, WebInterface

EXAMPLE_CATALOG = Path(__file__).parent / "example"

__all__ = [
    "BUILTIN_INTERFACES", "BindMount", "CHOICE_ID", "Catalog", "CatalogEntry", "CatalogProblem", "CatalogSource",
    "EXAMPLE_CATALOG", "GPU_MODES", "IMAGE_SCHEMES", "INTERFACES", "ImageReferenceError", "InvalidEntry", "ROLES",
    "RUNNABLE_INTERFACES", "SECTIONS", "owner_label", "UserEntryConflict", "UserEntryError",
    "UserEntryForbidden", "UserEntryNotFound", "UserEntryRules", "WebInterface", "add_user_entry",
    "check_image_reference", "check_user_image_reference", "disable_user_entry", "load_catalog",
    "enable_user_entry", "parse_entry", "read_entries_file",
]
