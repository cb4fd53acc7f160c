"""Issue 22, acceptance 1-4 and VS Code Remote's needs, with Debian's OpenSSH client against the
carme-ssh gateway of a real hub, on the real SLURM: a login with a hub token runs inside the
server's job as the user (its job id, its GPU, its step); alice+exp2 reaches her named server;
refusals say why and give no shell; scp/sftp land files owned by alice in her home and her
scratch; ssh -L reaches her own app inside the job and not bob's; exec, forward and SFTP share one
connection (ControlMaster, as VS Code Remote-SSH does); key logins; the session log; a session
ends when its job does."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncssh
import pytest
import requests
import yaml

from .conftest import running_hub
from .waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PORTS = (20400, 20481, 20401)
SSH_PORT = PORTS[0] + 9
SCRATCH = yaml.safe_load((REPO / "carme.example.yaml").read_text())["carme"]["scratch"]
GPU = {"gpus": 1, "gpu_type": "a100", "image": "pytorch-gpu", "runtime": 30}
CPU = {"gpus": 0, "image": "python-cpu", "runtime": 30}
APP_PORT, BOB_PORT, LOCAL_PORT = 20450, 20451, 20452
IDLE_TIMEOUT = 8  # seconds; a connection with no session (ssh -N) is closed after it


@pytest.fixture(scope="module")
def hub(cluster):
    ssh = {"url": f"http://127.0.0.1:{PORTS[0] + 7}", "ssh_port": SSH_PORT, "ssh_host": "127.0.0.1",
           "allowed_roles": ["power", "admin"], "sweep_interval": 2, "max_failures": 5,
           "idle_timeout": IDLE_TIMEOUT}
    scratch = {**SCRATCH, "url": f"http://127.0.0.1:{PORTS[0] + 6}"}
    with running_hub(ports=PORTS, job_prefix="carme-ssh-",
                     extra_env={"CARME__carme__ssh": json.dumps(ssh), "CARME__carme__scratch": json.dumps(scratch)},
                     harness_scopes=("custom:carme-ssh:admin", "access:services!service=carme-ssh")) as hub:
        hub.ssh_api = f"{hub.url}/services/carme-ssh/api"
        for user in ("alice", "bob", "carol", "dave", "erin"):
            hub.ensure_user(user)
        r = hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["alice", "bob", "carol", "dave"]})
        assert r.status_code in (200, 201), r.text
        assert wait_until(lambda: hub.session.get(f"{hub.ssh_api}/sessions").ok, 60), hub.log_tail()
        hub.tmp = Path(tempfile.mkdtemp(prefix="carme-ssh-test-"))
        hub.tokens = {}
        yield hub
        shutil.rmtree(hub.tmp, ignore_errors=True)


def token(hub, user: str) -> str:
    if user not in hub.tokens:
        hub.tokens[user] = hub.user_token(user)
    return hub.tokens[user]


def askpass(hub, secret: str) -> Path:
    """An SSH_ASKPASS program that answers `secret` (OpenSSH reads a password from it, not argv)."""
    path = hub.tmp / f"askpass-{abs(hash(secret))}"
    secret_file = path.with_suffix(".secret")
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    path.write_text(f"#!/bin/sh\ncat {secret_file}\n")
    path.chmod(0o700)
    return path


SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=INFO",
               "-o", "NumberOfPasswordPrompts=1", "-o", "BatchMode=no", "-o", "ConnectTimeout=20"]


def client_env(hub, secret: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    if secret is not None:
        env.update(SSH_ASKPASS=str(askpass(hub, secret)), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    return env


def password_options() -> list[str]:
    return ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]


def ssh(hub, login: str, command: str, secret: str | None = None, *, extra=(), timeout=120,
        user_for_token: str | None = None) -> subprocess.CompletedProcess:
    secret = secret if secret is not None else token(hub, user_for_token or login.split("+")[0])
    return subprocess.run(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), *extra,
                           f"{login}@127.0.0.1", command], capture_output=True, text=True, timeout=timeout,
                          env=client_env(hub, secret), stdin=subprocess.DEVNULL)


def job_of(hub, user: str, server: str = "") -> str:
    return str(hub.server_model(user, server)["state"]["job_id"])


@pytest.fixture(scope="module")
def servers(hub):
    for user, options, name in (("alice", GPU, ""), ("alice", CPU, "exp2"), ("bob", CPU, "")):
        r = hub.start_server(user, options, server=name)
        assert r.status_code in (201, 202), r.text
    for user, name in (("alice", ""), ("alice", "exp2"), ("bob", "")):
        hub.wait_ready(user, name)
    return {"alice": job_of(hub, "alice"), "exp2": job_of(hub, "alice", "exp2"), "bob": job_of(hub, "bob")}


def test_a_token_login_runs_inside_the_servers_job_as_the_user(hub, servers):
    r = ssh(hub, "alice", 'echo "$CARME_JOB_ID $CUDA_VISIBLE_DEVICES $SLURM_JOB_ID.$SLURM_STEP_ID"; id -un; '
            'echo "$APPTAINER_CONTAINER"; cat /proc/self/cgroup | head -3')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    job, cuda, step = lines[0].split()
    assert job == servers["alice"] and cuda == "0" and step.startswith(f"{servers['alice']}.")
    assert lines[1] == "alice"
    assert lines[2].endswith("pytorch-gpu.sif")  # inside the server's image (the STAND-IN apptainer says which)
    # the step is SLURM's: it is listed under the job while it runs (the dev cluster's proctrack/linuxproc
    # keeps no cgroup, so /proc/self/cgroup is the host's here; with proctrack/cgroup it is the job's)
    r = ssh(hub, "alice", "squeue -h -s -j $SLURM_JOB_ID -o '%i %j %u'")
    assert f"{step.split('.')[0]}." in r.stdout and "carme-ssh alice" in r.stdout, r.stdout + r.stderr


def test_alice_plus_exp2_reaches_her_named_servers_job(hub, servers):
    r = ssh(hub, "alice+exp2", "echo $CARME_JOB_ID; echo ${CUDA_VISIBLE_DEVICES:-none}; id -un")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [servers["exp2"], "none", "alice"]


def test_refusals_say_why_and_give_no_shell(hub, servers):
    r = ssh(hub, "alice", "echo SHELL-REACHED", secret=token(hub, "bob"))
    assert r.returncode == 255 and "SHELL-REACHED" not in r.stdout
    assert "not a valid hub API token of alice" in r.stderr
    r = ssh(hub, "alice", "echo SHELL-REACHED", secret="not-a-token")
    assert r.returncode == 255 and "not a valid hub API token of alice" in r.stderr
    r = ssh(hub, "erin", "echo SHELL-REACHED")  # erin's role is user: SSH is for power and admin here
    assert r.returncode == 255 and "not enabled for erin's role (user)" in r.stderr and "SHELL-REACHED" not in r.stdout
    r = ssh(hub, "carol", "echo SHELL-REACHED")  # a valid login, but no server
    assert r.returncode == 1 and r.stderr.strip().endswith("carol has no default server running; start it at the hub first")
    for _ in range(5):
        assert ssh(hub, "dave", "true", secret="wrong").returncode == 255
    r = ssh(hub, "dave", "echo SHELL-REACHED")  # his right token, within the cool-down
    assert r.returncode == 255 and "too many failed logins" in r.stderr and "SHELL-REACHED" not in r.stdout


def scp(hub, *args, secret_user="alice") -> subprocess.CompletedProcess:
    return subprocess.run(["scp", "-P", str(SSH_PORT), *SSH_OPTIONS, *password_options(), *args],
                          capture_output=True, text=True, timeout=120, env=client_env(hub, token(hub, secret_user)),
                          stdin=subprocess.DEVNULL)


def sftp(hub, login: str, batch: str, extra=()) -> subprocess.CompletedProcess:
    return subprocess.run(["sftp", "-P", str(SSH_PORT), *SSH_OPTIONS, *password_options(), *extra, "-b", "-",
                           f"{login}@127.0.0.1"], input=batch, capture_output=True, text=True, timeout=120,
                          env=client_env(hub, token(hub, login.split("+")[0])))


def test_scp_and_sftp_land_files_owned_by_alice_in_her_home_and_scratch(hub, servers):
    alice = pwd.getpwnam("alice")
    local = hub.tmp / "data.bin"
    local.write_bytes(os.urandom(300_000))
    local.chmod(0o644)
    r = scp(hub, str(local), "alice@127.0.0.1:carme-ssh-upload.bin")
    assert r.returncode == 0, r.stderr
    uploaded = Path(alice.pw_dir) / "carme-ssh-upload.bin"
    assert uploaded.read_bytes() == local.read_bytes() and uploaded.stat().st_uid == alice.pw_uid
    r = sftp(hub, "alice", f"put {local} /scratch/from-sftp.bin\nls -l /scratch\n")
    assert r.returncode == 0, r.stderr
    r = ssh(hub, "alice", "stat -c '%U %s' /scratch/from-sftp.bin; echo $CARME_SCRATCH")
    assert r.stdout.split() == ["alice", "300000", "/scratch"], r.stdout + r.stderr
    bob = pwd.getpwnam("bob")
    private = Path(bob.pw_dir) / "carme-ssh-private.txt"
    private.write_text("bob's secret\n")
    os.chown(private, bob.pw_uid, bob.pw_gid)
    private.chmod(0o600)
    r = sftp(hub, "alice", f"get {private} {hub.tmp / 'stolen.txt'}\n")
    assert r.returncode != 0 and not (hub.tmp / "stolen.txt").exists()
    assert "Permission denied" in r.stderr or "permission denied" in r.stderr.lower(), r.stderr
    uploaded.unlink()


def start_app(hub, user: str, port: int) -> subprocess.Popen:
    """`python3 -m http.server PORT` inside the user's job, kept running by its SSH session."""
    secret = token(hub, user)
    proc = subprocess.Popen(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), f"{user}@127.0.0.1",
                             f"cd /tmp && exec python3 -m http.server {port} --bind 127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(hub, secret),
                            stdin=subprocess.DEVNULL)
    listening = lambda: f":{port} " in subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout  # noqa: E731
    assert wait_until(listening, 60), proc.stderr.read1().decode() if proc.poll() is not None else "not listening"
    return proc


def forward(hub, user: str, local_port: int, remote_port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), "-N",
                             "-o", "ExitOnForwardFailure=yes", "-L", f"{local_port}:localhost:{remote_port}",
                             f"{user}@127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=client_env(hub, token(hub, user)), stdin=subprocess.DEVNULL)
    return proc


def fetch(port: int) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    except requests.RequestException:
        return None


def listening_on(port: int) -> bool:
    return f"127.0.0.1:{port} " in subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout


def test_a_forward_reaches_alices_app_inside_her_job_and_not_bobs(hub, servers):
    apps = [start_app(hub, "alice", APP_PORT), start_app(hub, "bob", BOB_PORT)]
    try:
        tunnel = forward(hub, "alice", LOCAL_PORT, APP_PORT)
        try:
            assert wait_until(lambda: listening_on(LOCAL_PORT), 30)
            response = wait_until(lambda: fetch(LOCAL_PORT), 30)
            assert response is not None and response.status_code == 200 and "Directory listing" in response.text
        finally:
            tunnel.terminate()
            tunnel.wait(10)
        tunnel = forward(hub, "alice", LOCAL_PORT, BOB_PORT)
        try:
            assert wait_until(lambda: listening_on(LOCAL_PORT), 30)
            assert fetch(LOCAL_PORT) is None  # the channel is refused: nothing of bob's app comes back
        finally:
            tunnel.terminate()
            _, err = tunnel.communicate(timeout=10)
        assert "another user's" in err.decode(), err
    finally:
        for app in apps:
            app.terminate()
            app.wait(10)


def test_exec_forward_and_sftp_share_one_connection_as_vs_code_remote_needs(hub, servers):
    control = hub.tmp / "control.sock"
    base = ["-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), "-o", f"ControlPath={control}"]
    env = client_env(hub, token(hub, "alice"))
    master = subprocess.run(["ssh", *base, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-fN",
                             "alice@127.0.0.1"], capture_output=True, text=True, timeout=60, env=env)
    assert master.returncode == 0, master.stderr
    app = None
    try:
        mux = ["ssh", *base, "-o", "ControlMaster=no", "-o", "BatchMode=yes"]
        r = subprocess.run([*mux, "alice@127.0.0.1", "echo $CARME_JOB_ID"], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == servers["alice"], r.stderr
        app = subprocess.Popen([*mux, "alice@127.0.0.1", f"cd /tmp && exec python3 -m http.server {APP_PORT} "
                                "--bind 127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_until(lambda: f":{APP_PORT} " in subprocess.run(["ss", "-ltn"], capture_output=True,
                                                                     text=True).stdout, 60)
        r = subprocess.run([*mux, "-O", "forward", "-L", f"{LOCAL_PORT}:127.0.0.1:{APP_PORT}", "alice@127.0.0.1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        response = wait_until(lambda: fetch(LOCAL_PORT), 30)
        assert response is not None and response.status_code == 200
        r = subprocess.run(["sftp", "-P", str(SSH_PORT), *SSH_OPTIONS, "-o", f"ControlPath={control}",
                            "-o", "ControlMaster=no", "-b", "-", "alice@127.0.0.1"], input="pwd\nls /scratch\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Remote working directory: /home/alice" in r.stdout, r.stdout + r.stderr
    finally:
        if app is not None:
            app.terminate()
            app.wait(10)
        subprocess.run(["ssh", *base, "-O", "exit", "alice@127.0.0.1"], capture_output=True, timeout=30)
    kinds = {s["kind"] for s in session_log(hub, "alice")}
    assert {"exec", "forward", "sftp"} <= kinds


def session_log(hub, user: str) -> list[dict]:
    r = requests.get(f"{hub.ssh_api}/sessions", headers={"Authorization": f"token {token(hub, user)}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["sessions"]


def test_a_registered_key_logs_in_and_sessions_are_logged_with_their_bytes(hub, servers):
    key = asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop")
    key_path = hub.tmp / "id_alice"
    key.write_private_key(str(key_path))
    key_path.chmod(0o600)
    auth = {"Authorization": f"token {token(hub, 'alice')}"}
    r = requests.post(f"{hub.ssh_api}/keys", json={"key": key.export_public_key().decode()}, headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    assert requests.post(f"{hub.ssh_api}/keys", json={"key": "ssh-ed25519 AAAA"}, headers=auth,
                         timeout=10).status_code == 400
    r = subprocess.run(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                        "-i", str(key_path), "alice@127.0.0.1", "id -un"], capture_output=True, text=True, timeout=60,
                       env=client_env(hub, None), stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.strip() == "alice", r.stderr
    r = subprocess.run(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                        "-i", str(key_path), "bob@127.0.0.1", "id -un"], capture_output=True, text=True, timeout=60,
                       env=client_env(hub, None), stdin=subprocess.DEVNULL)
    assert r.returncode == 255, "alice's key must not log in as bob"
    log = session_log(hub, "alice")
    assert all(s["user"] == "alice" for s in log)
    scp_uploads = [s for s in log if s["kind"] == "sftp" and s["bytes_in"] >= 300_000]
    assert scp_uploads and all(s["ended_at"] and s["peer"].startswith("127.0.0.1 ") for s in scp_uploads)
    everyone = hub.session.get(f"{hub.ssh_api}/sessions", timeout=10).json()["sessions"]
    assert {"alice", "bob"} <= {s["user"] for s in everyone}
    assert requests.get(f"{hub.ssh_api}/sessions?user=bob", headers=auth, timeout=10).status_code == 403


def test_an_idle_connection_is_closed_and_a_busy_one_is_not(hub, servers):
    began = time.monotonic()
    idle = subprocess.Popen(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), "-N", "alice@127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(hub, token(hub, "alice")),
                            stdin=subprocess.DEVNULL, text=True)
    busy = ssh(hub, "alice", f"sleep {IDLE_TIMEOUT + 6}; echo still-here")  # a session keeps its connection
    assert busy.returncode == 0 and busy.stdout.strip() == "still-here", busy.stderr
    idle.wait(60)  # the gateway closed the connection without sessions (TimeoutExpired if not)
    assert "carme: idle for too long" in idle.stderr.read()  # it had logged in, then the gateway closed it
    assert time.monotonic() - began >= IDLE_TIMEOUT
    assert any(s["kind"] == "exec" and "still-here" in s["detail"] for s in session_log(hub, "alice"))


def host_key_fingerprint() -> str:
    scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(SSH_PORT), "127.0.0.1"], capture_output=True,
                          text=True, timeout=30)
    keys = [line.split(None, 1)[1] for line in scan.stdout.splitlines() if line and not line.startswith("#")]
    assert keys, scan.stderr
    return keys[0]


def test_the_host_key_is_private_and_survives_a_restart(hub, servers):
    path = hub.workdir / "state" / "carme-ssh" / "ssh_host_ed25519_key"
    assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == 0
    before = host_key_fingerprint()
    hub.restart()
    assert wait_until(lambda: hub.session.get(f"{hub.ssh_api}/sessions").ok, 60), hub.log_tail()
    assert wait_until(lambda: subprocess.run(["ssh-keyscan", "-p", str(SSH_PORT), "127.0.0.1"], capture_output=True,
                                             timeout=30).stdout, 60)
    assert host_key_fingerprint() == before
    done = ssh(hub, "alice", "echo $CARME_JOB_ID")  # her server outlived the hub's restart, and SSH reaches it
    assert done.returncode == 0 and done.stdout.strip() == servers["alice"], done.stderr


def test_a_session_ends_when_its_job_ends(hub, servers):
    proc = subprocess.Popen(["ssh", "-p", str(SSH_PORT), *SSH_OPTIONS, *password_options(), "bob@127.0.0.1",
                             "echo started; sleep 600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=client_env(hub, token(hub, "bob")), stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "started"
    began = time.monotonic()
    hub.stop_server("bob")
    proc.wait(120)  # generous: the step ends with the job's cancel, and the channel with the step
    assert time.monotonic() - began < 120
