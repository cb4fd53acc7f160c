"""carme-ssh's SSH server (asyncssh): logins checked against the hub, sessions as steps of the job.

One `Gateway` per service. Per connection (`GatewayConnection`):

- the login names the user and server (`target.parse_login`); a cool-down (carme_core.throttle,
  as the LDAP login's) refuses a name from an address after `max_failures` wrong passwords;
- a password is a hub API token, checked against the hub on every login (GET /hub/api/user with
  it: it must name this user and may access this server); a public key must be one the user
  registered on the SSH keys page; the user's Carme role must be one SSH is enabled for. A
  refusal is said in an auth banner (OpenSSH prints it), then the login fails: no shell;
- every session and forward resolves its job anew from the hub (the server's state) and the
  hub's view of SLURM, and runs as a step of that job as the user (`enter`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from carme_core.roles import role_of_model
from carme_core.throttle import LoginThrottle
from carme_slurm import SlurmCommandError, run_command

from ..reconcile import jobs_from_view
from .enter import Account, StepSite, account_of, relay_command, sftp_command, shell_command, step_argv, step_env
from .relay import MARK
from .steps import ForwardSession, Pump, StepSession, controlling_tty
from .target import Login, Refusal, Target, check_role, find_target, parse_login, server_job, token_owner_ok

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "ip6-localhost")


@dataclass
class Live:
    """A logged-in connection: whose, from where, when it was last busy."""

    login: Login
    peer: str
    conn: asyncssh.SSHServerConnection
    last_active: float
    pumps: set


class Gateway:
    def __init__(self, service):
        self.service = service
        self.log = service.log
        self.throttle = LoginThrottle(max_failures=service.max_failures, window=service.failure_window,
                                      cooldown=service.cooldown, max_address_failures=service.max_address_failures)
        self.live: dict[int, Live] = {}
        self.scripts: dict[str, str] = {}  # job id -> SLURM's copy of its batch script
        self.site = StepSite(srun=service.srun, shell=service.shell, sftp_server=service.sftp_server,
                             relay=tuple(service.relay_command), path=service.step_path)
        self.server = None

    async def start(self) -> None:
        key = self.service.host_key()
        self.server = await asyncssh.create_server(
            lambda: GatewayConnection(self), self.service.ssh_host or None, self.service.ssh_port,
            server_host_keys=[key], encoding=None, line_editor=False, allow_scp=False, x11_forwarding=False,
            agent_forwarding=False, login_timeout=self.service.login_timeout,
            keepalive_interval=self.service.keepalive_interval, server_version="Carme",
        )
        self.log.info("carme-ssh: SSH on %s:%s (host key %s)", self.service.ssh_host or "*", self.service.ssh_port,
                      key.get_fingerprint())

    # ---- the hub ---------------------------------------------------------------------------------

    async def token_model(self, token: str) -> dict | None:
        """The hub's answer to GET /api/user for this token; None if the hub refuses the token."""
        try:
            response = await AsyncHTTPClient().fetch(HTTPRequest(
                f"{self.service.hub_api_url.rstrip('/')}/user", headers={"Authorization": f"token {token}"},
                request_timeout=20))
        except HTTPClientError as e:
            if e.code in (401, 403, 404):
                return None
            raise
        return json.loads(response.body)

    async def role(self, user: str) -> str | None:
        try:
            model = await self.service.hub_client().get(f"users/{user}")
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise
        return role_of_model(model, self.service.power_groups)

    async def target(self, login: Login) -> Target:
        hub = self.service.hub_client()
        try:
            model = await hub.get(f"users/{login.user}")
        except HTTPClientError as e:
            if e.code == 404:
                raise Refusal(f"carme: {login.user} is not a user of this hub") from None
            raise
        job_id = server_job(model, login)
        jobs, _, _ = jobs_from_view(await hub.slurm("jobs"))
        return find_target(login, job_id, jobs)

    async def batch_script(self, job_id: str) -> str:
        if job_id not in self.scripts:
            try:
                text = await run_command(["scontrol", "write", "batch_script", job_id, "-"],
                                         timeout=self.service.command_timeout)
            except SlurmCommandError as e:
                raise Refusal(f"carme: SLURM did not give job {job_id}'s script: {e}") from None
            if len(self.scripts) > 1000:
                self.scripts.clear()
            self.scripts[job_id] = text
        return self.scripts[job_id]

    # ---- steps -----------------------------------------------------------------------------------

    async def spawn(self, argv: list[str], account: Account, env: dict, *, slave: int | None = None):
        groups = os.getgrouplist(account.name, account.gid) if account.gid is not None else []
        kwargs = dict(user=account.uid, group=account.gid, extra_groups=groups, env=env, cwd="/")
        if slave is not None:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave,
                                                        preexec_fn=controlling_tty(slave), **kwargs)
            os.close(slave)
            return proc
        return await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True, **kwargs)

    async def open_session(self, live: Live, session: StepSession) -> None:
        """A shell, exec or sftp session: resolve the job, enter it, pump, report the exit status."""
        try:
            target = await self.target(live.login)
            account = account_of(live.login.user)
            script = await self.batch_script(target.job_id)
        except (Refusal, LookupError) as e:
            session.outcome = str(e)
            self.log.info("carme-ssh: %s from %s: %s", live.login.label, live.peer, e)
            session.end(1, str(e))
            return
        except Exception as e:  # noqa: BLE001 - the hub or SLURM did not answer
            session.outcome = f"error: {e}"
            self.log.warning("carme-ssh: %s from %s: %s", live.login.label, live.peer, e)
            session.end(1, "carme: the hub or SLURM did not answer; try again in a moment")
            return
        command = sftp_command(self.site) if session.kind == "sftp" else shell_command(self.site, session.command)
        pty = session.term is not None and session.kind != "sftp"
        argv = step_argv(self.site, target, account, command, pty=pty, script=script)
        env = step_env(account, target, term=session.term if pty else None, peer=live.peer, gateway_env=os.environ,
                       path=self.site.path)
        record = self.begin(live, target, session, (session.command or "")[:200])

        async def start(_pump):
            return await self.spawn(argv, account, env, slave=session.open_pty() if pty else None)

        live.pumps.add(session)
        status = await session.run(start)
        self.end(record, session)
        session.end(status, "" if status is not None else f"carme: {session.outcome}")

    async def open_forward(self, live: Live, host: str, port: int, nodes: Callable[[Target], tuple[str, ...]]):
        """A direct-tcpip channel: refused unless the relay step connected inside the job."""
        try:
            target = await self.target(live.login)
            if host not in (*LOCAL_HOSTS, *nodes(target)):
                raise Refusal(f"carme: forwards reach only the job's own node ({target.node}), not {host}")
            account = account_of(live.login.user)
            argv = step_argv(self.site, target, account, relay_command(self.site, port))
            env = step_env(account, target, term=None, peer=live.peer, gateway_env=os.environ, enter=False,
                           path=self.site.path)
            proc = await self.spawn(argv, account, env)
            line = await self._relay_answer(proc)
        except (Refusal, LookupError) as e:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
        if not line.startswith(f"{MARK} connected"):
            if proc.returncode is None:
                proc.kill()
            why = line.removeprefix(f"{MARK} refused ").strip() or "the relay did not start"
            self.log.info("carme-ssh: %s forward to port %s refused: %s", live.login.label, port, why)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"carme: {why}")
        session = ForwardSession(proc, on_end=lambda pump: self.end(record, pump))
        record = self.begin(live, target, session, f"{host}:{port}")
        live.pumps.add(session)
        return session

    async def _relay_answer(self, proc) -> str:
        """The relay's first line on stderr (srun's own lines before it are skipped)."""
        async def first():
            while line := await proc.stderr.readline():
                text = line.decode(errors="replace")
                if text.startswith(MARK):
                    return text
            return ""

        try:
            return await asyncio.wait_for(first(), self.service.command_timeout)
        except asyncio.TimeoutError:
            return f"{MARK} refused the relay did not answer in {self.service.command_timeout:g} s"

    # ---- the log ---------------------------------------------------------------------------------

    def begin(self, live: Live, target: Target, pump: Pump, detail: str) -> int:
        live.last_active = time.monotonic()
        self.service.metrics_sessions.labels(pump.kind).inc()
        self.log.info("carme-ssh: %s %s from %s into job %s on %s %s", live.login.label, pump.kind, live.peer,
                      target.job_id, target.node, detail)
        return self.service.store.session_started(user=target.user, server=target.server, job_id=target.job_id,
                                                  peer=live.peer, kind=pump.kind, detail=detail)

    def end(self, record: int, pump: Pump) -> None:
        self.service.metrics_bytes.labels("in").inc(pump.bytes_in)
        self.service.metrics_bytes.labels("out").inc(pump.bytes_out)
        self.service.store.session_ended(record, bytes_in=pump.bytes_in, bytes_out=pump.bytes_out,
                                         outcome=pump.outcome)
        self.log.info("carme-ssh: %s ended: %s, %d bytes in, %d out", pump.kind, pump.outcome, pump.bytes_in,
                      pump.bytes_out)
        for live in self.live.values():
            live.pumps.discard(pump)

    # ---- idle connections, ended jobs ------------------------------------------------------------

    async def sweep(self) -> None:
        """Close connections idle for `idle_timeout` and those whose job SLURM no longer runs."""
        now = time.monotonic()
        for key, live in list(self.live.items()):
            busy = any(p.bytes_in + p.bytes_out for p in live.pumps) and live.pumps
            if busy:
                live.last_active = now
            if self.service.idle_timeout and now - live.last_active > self.service.idle_timeout and not live.pumps:
                self.log.info("carme-ssh: closing %s from %s: idle", live.login.label, live.peer)
                live.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "carme: idle for too long")
                self.live.pop(key, None)
                continue
            try:
                await self.target(live.login)
            except Refusal as e:
                self.log.info("carme-ssh: closing %s from %s: %s", live.login.label, live.peer, e)
                live.conn.disconnect(asyncssh.DISC_BY_APPLICATION, str(e))
                self.live.pop(key, None)
            except Exception:  # noqa: BLE001 - doubt is not evidence: keep it
                pass


class GatewayConnection(asyncssh.SSHServer):
    """One client connection: the login, then its sessions and forwards."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.conn = None
        self.peer = ""
        self.login: Login | None = None
        self.refusal = ""

    def connection_made(self, conn):
        self.conn = conn
        host, port = (conn.get_extra_info("peername") or ("?", 0))[:2]
        local_host, local_port = (conn.get_extra_info("sockname") or ("?", 0))[:2]
        self.address = host
        self.peer = f"{host} {port} {local_host} {local_port}"

    def connection_lost(self, exc):
        self.gateway.live.pop(id(self), None)
        for pump in list(getattr(self, "pumps", ())):
            pump.stop("the connection ended")

    def begin_auth(self, username):
        try:
            self.login = parse_login(username)
        except Refusal as e:
            self.refusal = str(e)
        return True

    def _refuse(self, message: str) -> bool:
        self.conn.send_auth_banner(message.rstrip("\n") + "\n")
        return False

    def password_auth_supported(self):
        return True

    def public_key_auth_supported(self):
        return True

    async def validate_password(self, username, password):
        gateway, login = self.gateway, self.login
        if self.refusal:
            return self._refuse(self.refusal)
        lockout = gateway.throttle.lockout(login.user, self.address)
        if lockout:
            return self._refuse(f"carme: too many failed logins: {lockout.describe(time.time())}")
        model = await gateway.token_model(password) if password else None
        if model is None or not token_owner_ok(model, login):
            gateway.throttle.record_failure(login.user, self.address)
            gateway.service.metrics_refusals.labels("token").inc()
            gateway.log.info("carme-ssh: refused %s from %s: not a token of %s for this server", login.label,
                             self.address, login.user)
            return self._refuse(f"carme: that is not a valid hub API token of {login.user} for {login.label} "
                                "(make one at the hub's Token page)")
        gateway.throttle.record_success(login.user, self.address)
        return await self._allowed()

    async def validate_public_key(self, username, key):
        gateway, login = self.gateway, self.login
        if self.refusal or login is None:
            return False
        fingerprint = key.get_fingerprint()
        known = {fp for fp, _ in gateway.service.store.public_keys(login.user)}
        if fingerprint not in known:
            return False
        if not await self._allowed():
            return False
        gateway.service.store.key_used(login.user, fingerprint)
        return True

    async def _allowed(self) -> bool:
        gateway, login = self.gateway, self.login
        role = await gateway.role(login.user)
        try:
            if role is None:
                raise Refusal(f"carme: {login.user} is not a user of this hub")
            check_role(role, gateway.service.allowed_roles, login.user)
        except Refusal as e:
            gateway.service.metrics_refusals.labels("role").inc()
            return self._refuse(str(e))
        return True

    def auth_completed(self):
        self.pumps = set()
        self.live = Live(self.login, self.peer, self.conn, time.monotonic(), self.pumps)
        self.gateway.live[id(self)] = self.live

    def session_requested(self):
        return StepSession(lambda session: self.gateway.open_session(self.live, session), on_end=lambda pump: None)

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        if not self.gateway.service.allow_forwarding:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            "carme: port forwarding is off on this gateway")
        return self.gateway.open_forward(self.live, dest_host, dest_port, lambda target: (target.node,))

    def server_requested(self, listen_host, listen_port):
        return False  # remote forwarding (ssh -R) would listen on the gateway host: never

    def unix_connection_requested(self, dest_path):
        return False

    def unix_server_requested(self, listen_path):
        return False
