"""Which job an SSH login reaches, and whether it may (pure: the hub's models and view in, a Target
or a Refusal with the one line the user reads out).

    alice@gateway          alice's default server
    alice+exp2@gateway     alice's named server exp2

The `+` cannot be part of a user name: Carme's user names are POSIX names ([a-z_][a-z0-9_.-]*).
The job is the one the hub's server state names (written by the spawner at submit), and only if
the hub's ONE view of SLURM shows it RUNNING as that same user: a job's own report is never asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jupyterhub.services.auth import check_scopes

from carme_slurm.jobs import SlurmJob

SEPARATOR = "+"
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
SERVER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")


class Refusal(Exception):
    """A login or session that Carme refuses: str() is the one line the user reads."""


@dataclass(frozen=True)
class Login:
    user: str
    server: str  # "" for the default server

    @property
    def label(self) -> str:
        return f"{self.user}/{self.server}" if self.server else f"{self.user}/(default)"


@dataclass(frozen=True)
class Target:
    """The running job an SSH session enters."""

    user: str
    server: str
    job_id: str
    node: str  # where the server runs: the job's batch host
    gpus: int


def parse_login(username: str) -> Login:
    """`alice` or `alice+exp2`; Refusal for anything else."""
    user, sep, server = username.partition(SEPARATOR)
    if not USER_NAME.fullmatch(user):
        raise Refusal(f"carme: {username[:80]!r} is not a Carme login: use USER or USER+SERVER")
    if sep and not SERVER_NAME.fullmatch(server):
        raise Refusal(f"carme: {server[:80]!r} is not a server name (letters, digits, _ . -)")
    return Login(user, server)


def check_role(role: str, allowed_roles: Iterable[str], user: str) -> None:
    allowed = sorted(allowed_roles)
    if role not in allowed:
        who = ", ".join(allowed) if allowed else "nobody"
        raise Refusal(f"carme: SSH is not enabled for {user}'s role ({role}); this site allows it for: {who}")


def server_job(user_model: Mapping, login: Login) -> str:
    """The SLURM job id of the user's server from the hub's user model (with server state)."""
    servers = user_model.get("servers")
    if servers is None:
        raise RuntimeError("the hub did not show servers: carme-ssh's token lacks read:servers")
    model = servers.get(login.server)
    where = f"server {login.server!r}" if login.server else "default server"
    if not model:
        raise Refusal(f"carme: {login.user} has no {where} running; start it at the hub first")
    if model.get("pending") or not model.get("ready"):
        raise Refusal(f"carme: {login.user}'s {where} is not ready yet ({model.get('pending') or 'starting'}); "
                      "try again when the hub shows it running")
    if "state" not in model:
        raise RuntimeError("the hub did not show server state: carme-ssh's token lacks admin:server_state")
    job_id = str((model.get("state") or {}).get("job_id") or "")
    if not job_id.isdigit():
        raise Refusal(f"carme: {login.user}'s {where} runs no SLURM job that SSH could enter")
    return job_id


def find_target(login: Login, job_id: str, jobs: Iterable[SlurmJob]) -> Target:
    """The Target if the view shows `job_id` running as `login.user`; Refusal otherwise."""
    for job in jobs:
        if job.job_id != job_id:
            continue
        if job.user != login.user:  # the hub's state and SLURM disagree: enter nothing
            raise Refusal(f"carme: job {job_id} does not run as {login.user}; nothing to enter")
        if job.state != "RUNNING":
            raise Refusal(f"carme: job {job_id} of {login.label} is {job.state.lower()}, not running")
        node = job.batch_host or job.nodes.split(",")[0]
        return Target(login.user, login.server, job_id, node, job.gpus)
    raise Refusal(f"carme: job {job_id} of {login.label} is not in SLURM's queue any more")


def token_owner_ok(token_model: Mapping, login: Login) -> bool:
    """Does the hub's answer to GET /api/user with the token name `login.user`, with a token that
    may reach the server (its access scope, JupyterHub's `access:servers[!user=|!server=]`)?"""
    if token_model.get("kind", "user") != "user" or token_model.get("name") != login.user:
        return False
    wanted = {f"access:servers!server={login.user}/{login.server}"}
    return bool(check_scopes(wanted, set(token_model.get("scopes") or ())))
