"""A real JupyterHub process (with its real configurable-http-proxy) on the local SLURM, for tests.

Started from the project's own jupyterhub_config.py with the example settings, on test ports so
a running demo does not collide. Fails loudly when anything cannot start.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from .listeners import free_ports
from .waiting import wait_until

QUOTA_ADMIN = ("custom:carme-quota:admin", "access:services!service=carme-quota")  # harness_scopes for sync_quota

REPO = Path(__file__).resolve().parents[2]
VENV = Path("/opt/carme/venv")
STANDINS = Path("/opt/carme/standins")
ARTIFACTS = Path(os.environ.get("CARME_TEST_ARTIFACTS", REPO / "test-artifacts"))
#: a hub exits within ~3 s of SIGTERM here; one that has not after this is killed (its stop is recorded)
STOP_GRACE_SECONDS = 10
# Test hubs take fixed ports BELOW the ephemeral range (32768-60999 here), so no outgoing connection
# (slurmdbd, munge, the hub's own clients) and no server's random port can hold one when a hub starts.
# Each hub also uses public+1 (proxy API), +2 (catalog), +4 (quota) and public+81 (hub).
PUBLIC_PORT = 18000
HUB_PORT = 18081
PROXY_API_PORT = 18001

# counting (and, on request, failing) SLURM queries first on the hub's PATH (and so on its
# services' PATH): each call is logged with the command line of the process that made it
QUERY_WRAPPER = """#!/bin/bash
# Test wrapper: counts calls of {name} and who made them; fails like SLURM when $DIR/{name}.fail exists.
DIR=$(dirname "$0")
CALLER=$(tr '\\0' ' ' < /proc/$PPID/cmdline 2>/dev/null)
echo "$(date +%s.%N) $PPID $CALLER" >> "$DIR/{name}.calls"
if [ -f "$DIR/{name}.fail" ]; then cat "$DIR/{name}.fail" >&2; exit 1; fi
exec /usr/bin/{name} "$@"
"""
COUNTED = ("squeue", "sinfo", "scontrol")


class Hub:
    config_file = REPO / "jupyterhub_config.py"  # the benchmark's baseline hub points elsewhere
    def __init__(
        self,
        slurm_poll_interval: float = 2.0,
        extra_env: dict[str, str] | None = None,
        ports: tuple[int, int, int] = (PUBLIC_PORT, HUB_PORT, PROXY_API_PORT),
        job_prefix: str = "carme-test-",
        settings: Path = REPO / "carme.example.yaml",
        harness_scopes: tuple[str, ...] = (),
        extra_roles: tuple[dict, ...] = (),
        tls_dir: Path | None = None,
    ):
        self.workdir = Path(tempfile.mkdtemp(prefix="carme-test-hub-"))
        os.chmod(self.workdir, 0o700)
        self.bindir = self.workdir / "bin"
        self.bindir.mkdir()
        for name in COUNTED:
            wrapper = self.bindir / name
            wrapper.write_text(QUERY_WRAPPER.format(name=name))
            wrapper.chmod(0o755)
        self.token = secrets.token_hex(32)
        self.demo_password = secrets.token_hex(8)
        self.public_port, self.hub_port, self.proxy_api_port = ports
        self.job_prefix = job_prefix
        self.settings = settings
        self.harness_scopes = tuple(harness_scopes)  # more scopes for the tests' own token
        self.extra_roles = tuple(extra_roles)  # more roles for the hub (load_roles)
        # HTTPS (CarmeTLS) with the server certificate and CA that dev/tls.sh made in `tls_dir`
        self.tls_dir = Path(tls_dir) if tls_dir else None
        self.url = f"{'https' if self.tls_dir else 'http'}://127.0.0.1:{self.public_port}"
        self.api = f"{self.url}/hub/api"
        self.log_path = self.workdir / "hub.log"
        self.poll_interval = slurm_poll_interval
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        if self.tls_dir:  # trust the test CA (not $REQUESTS_CA_BUNDLE, which would win over session.verify)
            self.session.verify, self.session.trust_env = str(self.tls_dir / "ca.crt"), False

    # ---- process ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        services = [{"name": "carme-tests", "api_token": self.token}]
        roles = [
            {
                "name": "carme-tests",
                "services": ["carme-tests"],
                "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", "read:users", "admin:groups",
                           *self.harness_scopes],
            },
            *self.extra_roles,
        ]
        env = {
            "PATH": f"{self.bindir}:{STANDINS}:{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "CARME_SETTINGS": str(self.settings),
            "CARME_DEMO_PASSWORD": self.demo_password,
            "CARME__carme__authenticator": "dummy",  # LDAP tests set their own (extra_env)
            "CARME__carme__state_dir": str(self.workdir / "state"),
            "CARME__JupyterHub__bind_url": self.url,
            "CARME__JupyterHub__hub_port": str(self.hub_port),
            "CARME__JupyterHub__services": json.dumps(services),
            "CARME__JupyterHub__load_roles": json.dumps(roles),
            "CARME__ConfigurableHTTPProxy__api_url": f"http://127.0.0.1:{self.proxy_api_port}",
            "CARME__SlurmView__job_interval": str(self.poll_interval),
            "CARME__SlurmView__job_name_prefix": self.job_prefix,
            # each test hub its own catalog service port and user-entry store
            "CARME__carme__catalog": json.dumps(
                {
                    "user_dir": str(self.workdir / "catalog-user"),
                    "url": f"http://127.0.0.1:{self.public_port + 2}",
                    "user_image_prefixes": ["/opt/carme/images/"],
                    "reload_interval": 1,
                }
            ),
            # and its own quota service port (its store is new, in the hub's state_dir). The dev cluster is
            # shared: each test hub puts its own policy into SLURM at start, over what other hubs wrote
            "CARME__carme__quota": json.dumps({"url": f"http://127.0.0.1:{self.public_port + 4}",
                                               "overwrite_drift": True}),
            # bookings only where a test asks for them (their own port then: public + 5)
            "CARME__carme__reservations": "false",
            "CARME__carme__scratch": "false",  # scratch tests enable it (tests/integration/test_scratch.py)
            "CARME__carme__culler": "false",  # culler tests enable it (public + 7)
            "CARME__carme__sessions": "false",  # sessions tests enable it (public + 8)
            "CARME__carme__ssh": "false",  # SSH tests enable it (web public + 7, SSH public + 9)
            "CARME__carme__announcements": "false",  # announcement tests enable it (their own port)
            "CARME__carme__cockpit": "false",  # cockpit tests enable it (tests/integration/test_cockpit.py)
        }
        if self.tls_dir:
            env["CARME__CarmeTLS__cert"] = str(self.tls_dir / "server.crt")
            env["CARME__CarmeTLS__key"] = str(self.tls_dir / "server.key")
        env.update(self.extra_env)
        return env

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port this hub and its proxy and services listen on (services at public + 2 to 9; + 3 is
        test_reconcile's): a stop frees them all, so a service the hub left running cannot answer for
        the next hub's (a loaded machine once kept the old reconcile service answering)."""
        return (self.public_port, self.proxy_api_port, self.hub_port, *(self.public_port + i for i in range(2, 10)))

    def start(self, timeout: float = 60) -> None:
        stale = free_ports(self.ports)
        if stale:  # a hub that died before its clean-up left these: they would fail this one
            with open(self.log_path, "a") as log:
                log.write(f"carme tests: stopped processes left on this hub's ports: {stale}\n")
        with open(self.log_path, "a") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [str(VENV / "bin" / "jupyterhub"), "-f", str(self.config_file)],
                cwd=self.workdir,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.session.get(f"{self.api}/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"JupyterHub did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the hub (and so its proxy); servers stay (cleanup_servers is False)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # say what it was doing (test-artifacts/), then kill it
                self._record_slow_stop()
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            # a hub that exited on its own (a failed start: its proxy did not answer in time) or was
            # killed leaves its configurable-http-proxy and services (each in a session of its own)
            # on this hub's ports: every later hub on them would fail too
            free_ports(self.ports)
        self.proc = None

    def _record_slow_stop(self) -> None:
        lines = self.log_tail(400).splitlines()
        since = max([i for i, line in enumerate(lines) if "Received signal" in line] or [max(0, len(lines) - 40)])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with open(ARTIFACTS / "slow-hub-stops.log", "a") as f:
            f.write(f"==== {os.environ.get('PYTEST_CURRENT_TEST', '?')}: the hub ({self.url}) had not exited "
                    f"{STOP_GRACE_SECONDS} s after SIGTERM; its log since:\n" + "\n".join(lines[max(0, since - 10):]) + "\n")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- SLURM query counting -----------------------------------------------------------------
    def query_calls(self, name: str = "squeue") -> list[tuple[float, str]]:
        """(time, the calling process's command line) of every call of `name` so far."""
        path = self.bindir / f"{name}.calls"
        if not path.exists():
            return []
        calls = []
        for line in path.read_text().splitlines():
            when, _, rest = line.partition(" ")
            calls.append((float(when), rest.partition(" ")[2]))
        return calls

    def squeue_calls(self) -> list[float]:
        return [when for when, _ in self.query_calls("squeue")]

    def make_squeue_fail(self, message: str | None) -> None:
        path = self.bindir / "squeue.fail"
        if message is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(message + "\n")

    # ---- REST API --------------------------------------------------------------------------------
    def ensure_user(self, name: str) -> None:
        r = self.session.get(f"{self.api}/users/{name}")
        if r.status_code == 404:
            self.session.post(f"{self.api}/users/{name}").raise_for_status()

    def sync_quota(self, timeout: float = 60) -> None:
        """This hub's quota policy into SLURM now, over what another module's hub left there: the dev
        cluster is shared, and a hub's first sync knows only the users it had at start (a MaxWall or QOS
        left for a user created later refuses or strands that user's job). carme-quota's POST api/sync
        with overwrite_drift, on the tests' token: run the hub with QUOTA_ADMIN among its harness_scopes."""
        url = f"{self.url}/services/carme-quota/api/sync"
        r = wait_until(lambda: self.session.post(url, params={"overwrite_drift": 1}, timeout=timeout), timeout,
                       interval=0.5)  # a Response is truthy when ok
        assert r.ok, f"carme-quota's sync: HTTP {r.status_code} {r.text[:300]}"

    def user_token(self, name: str) -> str:
        r = self.session.post(f"{self.api}/users/{name}/tokens", json={"note": "carme test"})
        r.raise_for_status()
        return r.json()["token"]

    def server_url(self, user: str, server: str = "") -> str:
        return f"{self.api}/users/{user}/servers/{server}" if server else f"{self.api}/users/{user}/server"

    def start_server(self, user: str, options: dict | None = None, server: str = "") -> requests.Response:
        self.ensure_user(user)
        return self.session.post(self.server_url(user, server), json=options or {})

    def server_model(self, user: str, server: str = "") -> dict | None:
        r = self.session.get(f"{self.api}/users/{user}", params={"include_stopped_servers": "1"})
        r.raise_for_status()
        return r.json().get("servers", {}).get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if model and model.get("ready"):
                return model
            if model is not None and not model.get("pending") and not model.get("ready") and model.get("stopped"):
                raise AssertionError(f"server {user}/{server} stopped while starting: {model}\n{self.log_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{server} not ready in {timeout} s\n{self.log_tail()}")

    def stop_server(self, user: str, server: str = "", timeout: float = 60) -> None:
        r = self.session.delete(self.server_url(user, server))
        assert r.status_code in (202, 204, 404), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if not model or (not model.get("ready") and not model.get("pending")):
                return
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{server} did not stop in {timeout} s")

    def progress_events(self, user: str, server: str = "", timeout: float = 120, until=None) -> list[dict]:
        """Read the spawn progress stream (server-sent events) until it ends, `until(event)` or timeout."""
        url = f"{self.api}/users/{user}/server{'s/' + server if server else ''}/progress"
        events = []
        deadline = time.monotonic() + timeout
        with self.session.get(url, stream=True, timeout=(5, timeout)) as r:
            r.raise_for_status()
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("failed") or event.get("ready") or (until and until(event)):
                        break
                if time.monotonic() > deadline:
                    break
        return events

    def carme_status(self) -> dict:
        r = self.session.get(f"{self.api}/carme/status")
        r.raise_for_status()
        return r.json()

    def job_id(self, user: str, server: str = "") -> str:
        model = self.server_model(user, server) or {}
        return str((model.get("state") or {}).get("job_id", ""))
