"""`carme`: run one of Carme's services by hand, list them, or ask carme-quota about quotas and projects.

    carme services                      the installed services and what each does
    carme <service> [--help-all] ...    run it (as the hub would: `python -m carme_services.<name>`)

    carme quota show [USER]             limits (effective / role default / override) and use (default: you)
    carme quota list                    every user, most GPU-hours first (admins)
    carme quota set USER LIMIT=VALUE... change those fields of USER's override (VALUE none clears one)
    carme quota clear USER              drop USER's override
    carme quota sync [--dry-run]        sync now: the sacctmgr commands and the drift
    carme quota audit [--target user:NAME] [--limit N]
    carme project list | create NAME ... | request NAME | requests NAME | approve/deny NAME ID
    carme scratch-scripts --out DIR [--settings FILE]
                                        write the SLURM Prolog/Epilog of jobs' scratch (carme-prolog,
                                        carme-epilog) from the settings' carme.scratch section

    carme hub --settings FILE [JUPYTERHUB OPTION...]
                                        start JupyterHub with the installed config (carme_hub/config.py)
    carme status | jobs | history | drain | resume | announce ...
                                        the admins' commands (`carme status --help` and so on):
                                        the hub's view of SLURM, carme-cockpit, carme-announcements

`carme quota` followed by show, list, set, clear, sync or audit is this client; followed by anything
else (`--help-all`, `--once`, `--QuotaService.dry_run=True`, nothing) it runs the carme-quota service.
So the client's options come after its subcommand: `carme quota sync --dry-run`, not `carme quota
--dry-run sync` (that is the service's flag). Every client command takes `--url` (else $CARME_URL,
else http://127.0.0.1:8000) and `--json` (the API's answer as is); the token is $JUPYTERHUB_API_TOKEN.
Exit status: 1 when the API refuses (its message is printed) or a sync fails, 2 on bad arguments
or no token. `carme quota show --help` and so on tell each command's options. The admins'
commands (`cli_admin`) also take the hub's URL from $JUPYTERHUB_URL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib.metadata import entry_points

from .quota import client

QUOTA_COMMANDS = ("show", "list", "set", "clear", "sync", "audit")
ADMIN_COMMANDS = ("status", "jobs", "history", "drain", "resume", "announce")  # cli_admin.COMMANDS


def services() -> dict[str, str]:
    """{name: module} of the installed services (entry point group carme.services)."""
    return {ep.name: ep.value.partition(":")[0] for ep in entry_points(group="carme.services")}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["project"] or (args[:1] == ["quota"] and len(args) > 1 and args[1] in QUOTA_COMMANDS):
        status = client_main(args)
        if status:
            raise SystemExit(status)
        return
    if args[:1] == ["scratch-scripts"]:
        scratch_scripts(args[1:])
        return
    if args[:1] == ["hub"]:
        from . import cli_hub

        cli_hub.main(args[1:])
        return
    if args[:1] and args[0] in ADMIN_COMMANDS:
        from . import cli_admin

        status = cli_admin.main(args)
        if status:
            raise SystemExit(status)
        return
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


def scratch_scripts(argv: list[str]) -> None:
    """`carme scratch-scripts`: the node scripts from the settings file's carme.scratch section."""
    import os
    from pathlib import Path

    import yaml

    from carme_slurm.node_scripts import write_node_scripts
    from carme_slurm.scratch import layout_from_settings

    from .scratch.service import layout_settings

    parser = argparse.ArgumentParser(prog="carme scratch-scripts", description=scratch_scripts.__doc__)
    parser.add_argument("--out", required=True, help="directory for carme-prolog and carme-epilog")
    parser.add_argument("--settings", default=os.environ.get("CARME_SETTINGS", ""),
                        help="the settings file (default: $CARME_SETTINGS)")
    options = parser.parse_args(argv)
    if not options.settings:
        raise SystemExit("carme scratch-scripts: give --settings FILE (or set CARME_SETTINGS)")
    with open(options.settings) as f:
        section = ((yaml.safe_load(f) or {}).get("carme") or {}).get("scratch")
    if section is None or section is False:
        raise SystemExit(f"{options.settings}: no carme.scratch section (scratch is off)")
    values = section if isinstance(section, dict) else {}  # `scratch: true`: the defaults
    try:
        layout = layout_from_settings(layout_settings(values))
    except ValueError as e:
        raise SystemExit(f"{options.settings}: carme.scratch.{e}") from None
    for path in write_node_scripts(layout, Path(options.out)):
        print(path)


# ---- the client: `carme quota <command>`, `carme project <command>` ----------------------------------

def client_main(args: list[str]) -> int:
    """Parse, make the request(s), print the answer; the exit status."""
    a = parser().parse_args(args)
    try:
        answer, text = a.run(client.connect(a.url), a)
    except client.ClientError as e:
        print(f"carme: {e}", file=sys.stderr)
        return e.status
    print(json.dumps(answer, indent=2) if a.json else text(answer))
    if answer.get("error"):  # a sync's answer: it ran and failed
        print(f"carme: the sync failed: {answer['error']}", file=sys.stderr)
        return 1
    return 0


def quota_show(api, a):
    return api.quota("GET", f"users/{client.part(a.user or api.me())}"), client.report_text


def quota_list(api, a):
    return api.quota("GET", "users"), client.users_text


def quota_set(api, a):
    """Only the named fields change: the rest of the override is read first and kept."""
    user = client.part(a.user)
    current = api.quota("GET", f"users/{user}")["limits"]["override"]
    return api.quota("PUT", f"users/{user}/override", {**current, **dict(a.limits)}), client.override_text


def quota_clear(api, a):
    return api.quota("DELETE", f"users/{client.part(a.user)}/override"), client.override_text


def quota_sync(api, a):
    return api.quota("POST", "sync", dry_run=1 if a.dry_run else None), client.sync_text


def quota_audit(api, a):
    return api.quota("GET", "audit", target=a.target, limit=a.limit), client.audit_text


def project_list(api, a):
    return api.quota("GET", "projects"), client.projects_text


def project_create(api, a):
    template = {k: v for k, v in [("gpus_at_once", a.gpus_at_once), ("gpus_per_job", a.gpus_per_job),
                                  ("max_runtime_minutes", a.max_runtime_minutes), ("gpu_hours", a.gpu_hours),
                                  ("disk_gib", a.disk_gib), ("disk_inodes", a.disk_inodes),
                                  ("partitions", a.partition)] if v is not None}
    body = {"name": a.name, "description": a.description, "managers": a.manager or [], "template": template}
    return api.quota("POST", "projects", body), client.project_text


def project_request(api, a):
    answer = api.quota("POST", f"projects/{client.part(a.name)}/requests", {"message": a.message})
    return answer, client.request_text


def project_requests(api, a):
    return api.quota("GET", f"projects/{client.part(a.name)}/requests"), client.requests_text


def project_decide(approve: bool):
    def decide(api, a):
        path = f"projects/{client.part(a.name)}/requests/{a.request_id}"
        return api.quota("POST", path, {"approve": approve}), client.request_text
    return decide


def limit_pair(text: str):
    try:
        return client.parse_limit(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the hub's URL (default: $CARME_URL, else http://127.0.0.1:8000)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer as is")
    top = argparse.ArgumentParser(prog="carme", description="Carme's quotas and projects (carme-quota's API)")
    groups = top.add_subparsers(dest="group", required=True)

    def commands(group: str, help: str):
        sub = groups.add_parser(group, help=help).add_subparsers(dest="command", required=True)

        def command(name: str, run, help: str, *positionals: str) -> argparse.ArgumentParser:
            """Subcommand `name` running `run`; positionals "USER", "[USER]" (optional) ..."""
            p = sub.add_parser(name, parents=[common], help=help, description=help)
            p.set_defaults(run=run)
            for arg in positionals:
                name = arg.strip("[]")
                p.add_argument(name.lower(), metavar=name, nargs="?" if arg[0] == "[" else None)
            return p
        return command

    quota = commands("quota", "users' limits and use, overrides, the sync, the audit")
    quota("show", quota_show, "limits and use of USER (default: you)", "[USER]")
    quota("list", quota_list, "every user, most GPU-hours first (admins)")
    p = quota("set", quota_set, "change those fields of USER's override (VALUE none clears one)", "USER")
    p.add_argument("limits", nargs="+", type=limit_pair, metavar="LIMIT=VALUE")
    quota("clear", quota_clear, "drop USER's override", "USER")
    quota("sync", quota_sync, "sync now; the sacctmgr commands and the drift").add_argument(
        "--dry-run", action="store_true", help="plan the commands, run none")
    p = quota("audit", quota_audit, "who changed what, when")
    p.add_argument("--target", help="only changes of this target, e.g. user:alice or project:p")
    p.add_argument("--limit", type=int, help="at most N entries (the API's default: 100)")

    project = commands("project", "projects, their members' templates and membership requests")
    project("list", project_list, "the projects (members and requests for their managers)")
    p = project("create", project_create, "create project NAME (admins)", "NAME")
    p.add_argument("--description", default="")
    p.add_argument("--manager", action="extend", nargs="+", metavar="USER", help="its managers")
    p.add_argument("--gpus-at-once", type=int, metavar="N", help="GPUs of all members together")
    p.add_argument("--gpus-per-job", type=int, metavar="N")
    p.add_argument("--max-runtime-minutes", type=int, metavar="N")
    p.add_argument("--gpu-hours", type=float, metavar="H", help="the project's GPU-hour budget per period")
    p.add_argument("--partition", action="extend", nargs="+", metavar="P", help="partitions (default all)")
    p.add_argument("--disk-gib", type=float, metavar="G", help="the project group's disk quota")
    p.add_argument("--disk-inodes", type=int, metavar="N", help="the project group's file quota")
    project("request", project_request, "ask to join NAME", "NAME").add_argument("--message", default="")
    project("requests", project_requests, "NAME's pending requests (managers, admins)", "NAME")
    for verb, approve in (("approve", True), ("deny", False)):
        p = project(verb, project_decide(approve), f"{verb} request REQUEST_ID to join project NAME", "NAME")
        p.add_argument("request_id", type=int, metavar="REQUEST_ID")
    return top
