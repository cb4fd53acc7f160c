"""`carme`: run one of Carme's services by hand, or list them.

    carme services                      the installed services and what each does
    carme <service> [--help-all] ...    run it (as the hub would: `python -m carme_services.<name>`)
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points


def services() -> dict[str, str]:
    """{name: module} of the installed services (entry point group carme.services)."""
    return {ep.name: ep.value.partition(":")[0] for ep in entry_points(group="carme.services")}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    known = services()
    if not args or args[0] in ("-h", "--help", "services"):
        print(__doc__.strip() + "\n")
        for name, module in sorted(known.items()):
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            print(f"  {name:12} {doc}")
        return
    if args[0] not in known:
        raise SystemExit(f"carme: no service {args[0]!r}; installed: {', '.join(sorted(known))}")
    importlib.import_module(known[args[0]]).main(args[1:])
