"""The carme-ssh service: an SSH gateway into the users' jobs, and its SSH keys page.

It listens for SSH on `ssh_port` of the hub host (asyncssh) and for HTTP where the hub proxies
/services/carme-ssh/ to. A session lands inside the user's job and inside its container, as the
user (`enter`); nothing runs on the gateway host but srun. It reads the hub (users' servers and
their state) and the hub's ONE view of SLURM; its only SLURM calls are `scontrol write
batch_script` (SLURM's copy of the job's script, once per job) and the session steps themselves.
It must run as root: it starts each step with the user's uid and groups.
"""

from __future__ import annotations

import os
import stat
from functools import cached_property
from pathlib import Path

import asyncssh
from prometheus_client import Counter, Gauge
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate

from carme_core.roles import ROLES

from ..base import CarmeService, PeriodicTask
from ..wiring import ServiceSettings, admins_role, checked_settings, own_role, service_spec
from .enter import DEFAULT_PATH, default_relay
from .gateway import Gateway
from .store import SshStore, database

NAME = "carme-ssh"
KEYS_SCOPE = "custom:carme-ssh:keys"  # a user's own SSH keys and session log
ADMIN_SCOPE = "custom:carme-ssh:admin"  # everyone's session log


class SshService(CarmeService):
    name = NAME
    template_dir = Path(__file__).resolve().parent / "templates"
    description = "SSH, SFTP and port forwarding into the users' jobs, as the users, inside their containers."

    ssh_host = Unicode("0.0.0.0", config=True, help="Address the SSH gateway listens on ('' for every address).")
    ssh_port = Integer(2222, config=True, help="Port of the SSH gateway on the hub host.")
    public_host = Unicode("", config=True, help="The host name users connect to (shown on the SSH keys page and "
                          "in its ~/.ssh/config snippet); default: this host's name.")
    host_key_path = Unicode("", config=True, help="The gateway's ed25519 host key (made at the first start, mode "
                            "0600; kept across restarts so clients' known_hosts stay valid). Default: "
                            "<carme.state_dir>/carme-ssh/ssh_host_ed25519_key.")
    db_url = Unicode("", config=True, help="SQLAlchemy URL of the SSH store (users' public keys, the session log); "
                     "default sqlite:///<carme.state_dir>/carme-ssh.sqlite.")
    allowed_roles = List(Unicode(), list(ROLES), config=True, help="Carme roles that may log in over SSH "
                         f"({', '.join(ROLES)}); [] turns SSH off for everyone.")
    allow_forwarding = Bool(True, config=True, help="Allow local port forwarding (ssh -L; VS Code Remote needs it) "
                            "to ports of the user's own apps on the job's node. Remote forwarding (ssh -R) is never "
                            "allowed: it would listen on the gateway host.")
    max_failures = Integer(5, config=True, help="Wrong tokens for one user name from one address before a "
                           "cool-down (as the LDAP login's throttle).")
    max_address_failures = Integer(20, config=True, help="Wrong tokens from one address, any names, before a "
                                   "cool-down of the address.")
    failure_window = Float(300.0, config=True, help="Seconds over which failures count.")
    cooldown = Float(300.0, config=True, help="Seconds a locked name/address is refused.")
    login_timeout = Float(60.0, config=True, help="Seconds a client has to log in.")
    keepalive_interval = Float(60.0, config=True, help="Seconds between keepalives to a quiet client (0: none).")
    idle_timeout = Float(3600.0, config=True, help="A connection with no session or forward for this many seconds is "
                         "closed (0: never). A connection also ends when its job ends.")
    sweep_interval = Float(30.0, config=True, help="Seconds between checks for idle connections and ended jobs.")
    srun = Unicode("srun", config=True, help="The srun that starts the session steps.")
    shell = Unicode("/bin/bash", config=True, help="The shell in the container for shells and `ssh host CMD`.")
    sftp_server = Unicode("/usr/lib/openssh/sftp-server", config=True, help="OpenSSH's sftp-server in the image: "
                          "SFTP and scp run it as the user inside the job's container.")
    relay_command = List(Unicode(), config=True, help="argv of the port-forward relay on the nodes (outside the "
                         "container, as the user; the port is appended). Default: this Python -m "
                         "carme_services.ssh.relay (the nodes have Carme's venv, as for the launcher).")
    step_path = Unicode(config=True, help="PATH of the session steps on the nodes (where srun, the container runtime "
                        "and the relay's Python are found). Default: the gateway's own PATH (the hub's, which the "
                        "nodes share), else the system's.")
    command_timeout = Float(30.0, config=True, help="Seconds an scontrol call or a relay's start may take.")

    aliases = {**CarmeService.aliases, "ssh-port": "SshService.ssh_port", "db-url": "SshService.db_url"}

    @default("step_path")
    def _step_path_default(self):
        return os.environ.get("PATH") or DEFAULT_PATH

    @default("relay_command")
    def _relay_default(self):
        return list(default_relay())

    @validate("ssh_port")
    def _check_port(self, proposal):
        if not 0 < proposal.value < 65536:
            raise TraitError(f"ssh_port: 1-65535, not {proposal.value}")
        return proposal.value

    @validate("allowed_roles")
    def _check_roles(self, proposal):
        unknown = sorted(set(proposal.value) - set(ROLES))
        if unknown:
            raise TraitError(f"allowed_roles: {', '.join(unknown)} is not a Carme role ({', '.join(ROLES)})")
        return proposal.value

    @validate("max_failures", "max_address_failures")
    def _check_failures(self, proposal):
        if proposal.value < 1:
            raise TraitError(f"{proposal.trait.name}: at least 1, not {proposal.value}")
        return proposal.value

    # ---- parts -----------------------------------------------------------------------------------

    @cached_property
    def store(self) -> SshStore:
        if not self.db_url:
            raise SystemExit(f"{NAME}: db_url is not set (carme: ssh: db_url: in the settings file)")
        db = database(self.db_url)
        db.upgrade()
        return SshStore(db)

    @cached_property
    def gateway(self) -> Gateway:
        return Gateway(self)

    @cached_property
    def metrics_sessions(self):
        return Counter("carme_ssh_sessions", "SSH sessions and forwards started", ["kind"],
                       registry=self.metrics.registry)

    @cached_property
    def metrics_bytes(self):
        return Counter("carme_ssh_bytes", "Bytes through SSH sessions and forwards", ["direction"],
                       registry=self.metrics.registry)

    @cached_property
    def metrics_refusals(self):
        return Counter("carme_ssh_refusals", "Logins refused", ["reason"], registry=self.metrics.registry)

    @cached_property
    def metrics_live(self):
        gauge = Gauge("carme_ssh_connections", "Logged-in SSH connections", registry=self.metrics.registry)
        gauge.set_function(lambda: len(self.gateway.live))
        return gauge

    def host_key(self) -> asyncssh.SSHKey:
        path = Path(self.host_key_path)
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{NAME} host key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key())
            self.log.info("%s: made the host key %s", NAME, path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SystemExit(f"{NAME}: the host key {path} is readable by others (mode {stat.filemode(mode)}): "
                             "chmod 600 it")
        return asyncssh.read_private_key(str(path))

    def web_handlers(self):
        from .pages import KeyHandler, KeysApiHandler, KeysPage, SessionsApiHandler

        return [("keys", KeysPage, {}), ("api/keys", KeysApiHandler, {}), (r"api/keys/(\d+)", KeyHandler, {}),
                ("api/sessions", SessionsApiHandler, {})]

    def periodic_tasks(self):
        return [PeriodicTask("sweep", self.sweep_interval, self.gateway.sweep, delay=self.sweep_interval)]

    async def run(self) -> None:
        if not self.host_key_path:
            raise SystemExit(f"{NAME}: host_key_path is not set (carme: ssh: host_key_path:)")
        self.store  # noqa: B018 - migrate before the first login
        self.metrics_live  # noqa: B018
        await self.gateway.start()
        await super().run()

    def connect_hint(self, user: str) -> dict:
        host = self.public_host or os.uname().nodename
        return {"host": host, "port": self.ssh_port, "command": f"ssh -p {self.ssh_port} {user}@{host}"}


# ---- the hub's wiring (pure) ---------------------------------------------------------------------


def hub_service(settings: ServiceSettings) -> dict:
    values, _ = checked_settings(SshService, settings)
    values.setdefault("db_url", f"sqlite:///{settings.state_dir}/carme-ssh.sqlite")
    values.setdefault("host_key_path", f"{settings.state_dir}/carme-ssh/ssh_host_ed25519_key")
    values.setdefault("relay_command", [settings.python, "-m", "carme_services.ssh.relay"])
    return {
        "service": service_spec(SshService, settings, values, url=values.get("url", "http://127.0.0.1:10109"),
                                allowed_scopes=[KEYS_SCOPE, ADMIN_SCOPE], display=True),
        "custom_scopes": {
            KEYS_SCOPE: {"description": "Manage a user's SSH public keys and read their SSH session log."},
            ADMIN_SCOPE: {"description": "Read every user's SSH session log."},
        },
        "roles": [
            own_role(NAME, ["read:users", "read:servers", "admin:server_state"],
                     "carme-ssh reads users (their roles), their servers' state (the SLURM job) and the SLURM view."),
            admins_role(f"{NAME}-admins", settings, [ADMIN_SCOPE], "The hub's admins read every SSH session log."),
        ],
        "user_scopes": [f"{KEYS_SCOPE}!user", f"access:services!service={NAME}"],
    }


if __name__ == "__main__":
    SshService.launch_instance()
