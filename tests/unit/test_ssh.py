"""carme-ssh's pure parts: logins, targets, the step argv and environment, the relay's owner check,
public keys, the store, the wiring."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import asyncssh
import pytest
import sqlalchemy as sa

from carme_services.ssh import relay
from carme_services.ssh.enter import Account, StepSite, relay_command, shell_command, step_argv, step_env
from carme_services.ssh.pages import parse_public_key
from carme_services.ssh.service import ADMIN_SCOPE, KEYS_SCOPE, SshService, hub_service
from carme_services.ssh.store import KeyExists, SshStore, database
from carme_services.ssh.target import (
    Login,
    Refusal,
    Target,
    check_role,
    find_target,
    parse_login,
    server_job,
    token_owner_ok,
)
from carme_services.wiring import ServiceSettings
from carme_slurm.jobs import SlurmJob

ALICE = Login("alice", "")
TARGET = Target("alice", "", "42", "carme-n1", 1)
ACCOUNT = Account("alice", "/home/alice", "/bin/bash", 10001, 10000)


def job(job_id="42", user="alice", state="RUNNING", batch_host="carme-n1", nodes="carme-n1", gpus=1) -> SlurmJob:
    return SlurmJob(job_id=job_id, name="carme-alice", user=user, state=state, reason="None", partition="interactive",
                    nodes=nodes, batch_host=batch_host, comment="carme:alice/", submit_time=0, start_time=0,
                    end_time=0, time_limit_minutes=60, exit_status=None, exit_signal=None, output_path="", gpus=gpus)


# ---- logins and targets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, login", [("alice", Login("alice", "")), ("alice+exp2", Login("alice", "exp2")),
                                         ("bob_2+my.server-1", Login("bob_2", "my.server-1"))])
def test_a_login_names_the_user_and_the_server(name, login):
    assert parse_login(name) == login


@pytest.mark.parametrize("name", ["Alice", "root;id", "alice+", "alice+a/b", "", "alice+x y", "-alice"])
def test_other_logins_are_refused_with_one_line(name):
    with pytest.raises(Refusal, match="^carme: "):
        parse_login(name)


def test_the_role_switch_names_the_roles_that_may():
    check_role("power", ["power", "admin"], "alice")
    with pytest.raises(Refusal, match=r"not enabled for alice's role \(user\); this site allows it for: admin, power"):
        check_role("user", ["admin", "power"], "alice")
    with pytest.raises(Refusal, match="for: nobody"):
        check_role("admin", [], "alice")


def servers(**by_name):
    return {"name": "alice", "servers": by_name}


def test_the_job_is_the_one_in_the_servers_state():
    assert server_job(servers(**{"": {"ready": True, "pending": None, "state": {"job_id": "42"}}}), ALICE) == "42"
    exp2 = servers(exp2={"ready": True, "pending": None, "state": {"job_id": "7"}})
    assert server_job(exp2, Login("alice", "exp2")) == "7"


def test_no_server_or_a_starting_one_is_a_clear_refusal():
    with pytest.raises(Refusal, match="alice has no default server running; start it at the hub first"):
        server_job(servers(), ALICE)
    with pytest.raises(Refusal, match="alice has no server 'exp2' running"):
        server_job(servers(**{"": {"ready": True, "state": {"job_id": "1"}}}), Login("alice", "exp2"))
    with pytest.raises(Refusal, match="not ready yet \\(spawn\\)"):
        server_job(servers(**{"": {"ready": False, "pending": "spawn", "state": {}}}), ALICE)


def test_without_the_state_scope_the_service_says_so():
    with pytest.raises(RuntimeError, match="admin:server_state"):
        server_job(servers(**{"": {"ready": True, "pending": None}}), ALICE)
    with pytest.raises(RuntimeError, match="read:servers"):
        server_job({"name": "alice"}, ALICE)


def test_the_view_must_show_the_job_running_as_the_user():
    assert find_target(ALICE, "42", [job("41"), job()]) == TARGET
    with pytest.raises(Refusal, match="does not run as alice"):
        find_target(ALICE, "42", [job(user="bob")])
    with pytest.raises(Refusal, match="is pending, not running"):
        find_target(ALICE, "42", [job(state="PENDING")])
    with pytest.raises(Refusal, match="not in SLURM's queue any more"):
        find_target(ALICE, "42", [job("41")])


def test_a_multi_node_job_is_entered_on_its_batch_host():
    assert find_target(ALICE, "42", [job(nodes="carme-n1,carme-n2", batch_host="carme-n2")]).node == "carme-n2"


@pytest.mark.parametrize("model, ok", [
    ({"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice", "read:users!user=alice"]}, True),
    ({"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/"]}, True),
    ({"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/other"]}, False),
    ({"kind": "user", "name": "alice", "scopes": ["read:users!user=alice"]}, False),  # a read-only token
    ({"kind": "user", "name": "bob", "scopes": ["access:servers!user=bob"]}, False),  # bob's token
    ({"kind": "user", "name": "bob", "scopes": ["access:servers"]}, False),  # an admin's token is still not alice's
    ({"kind": "service", "name": "alice", "scopes": ["access:servers"]}, False),
])
def test_a_token_must_be_the_users_own_and_reach_the_server(model, ok):
    assert token_owner_ok(model, ALICE) is ok


# ---- the step ------------------------------------------------------------------------------------


def test_a_session_is_a_step_of_the_job_through_its_batch_script():
    argv = step_argv(StepSite(), TARGET, ACCOUNT, ["/bin/bash", "-c", "id -un"], script="#!/bin/bash\nexec x")
    assert argv == ["srun", "--jobid=42", "--overlap", "--nodes=1", "--ntasks=1", "--nodelist=carme-n1",
                    "--chdir=/home/alice", "--job-name=carme-ssh", "--quiet", "--unbuffered", "--export=ALL",
                    "bash", "-c", "#!/bin/bash\nexec x", "carme-enter", "/bin/bash", "-c", "id -un"]


def test_a_terminal_asks_srun_for_a_pty_and_the_relay_runs_outside_the_container():
    assert "--pty" in step_argv(StepSite(), TARGET, ACCOUNT, ["/bin/bash", "-l"], pty=True, script="s")
    argv = step_argv(StepSite(relay=("/opt/py", "-m", "r")), TARGET, ACCOUNT, relay_command(StepSite(relay=("/opt/py", "-m", "r")), 8888))
    assert argv[-4:] == ["/opt/py", "-m", "r", "8888"] and "bash" not in argv and "--pty" not in argv


def test_commands_run_as_openssh_runs_them():
    assert shell_command(StepSite(), "echo $CARME_JOB_ID") == ["/bin/bash", "-c", "echo $CARME_JOB_ID"]
    assert shell_command(StepSite(), None) == ["/bin/bash", "-l"]


def test_the_steps_environment_is_the_users_not_the_gateways():
    gateway = {"HOME": "/root", "JUPYTERHUB_API_TOKEN": "secret", "SLURM_CONF": "/etc/slurm/slurm.conf",
               "PATH": "/root/bin:/usr/bin"}
    env = step_env(ACCOUNT, Target("alice", "exp2", "42", "n1", 1), term="xterm-256color", peer="1.2.3.4 5 6.7.8.9 22",
                   gateway_env=gateway)
    assert env["HOME"] == "/home/alice" and env["USER"] == env["LOGNAME"] == "alice"
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf" and "JUPYTERHUB_API_TOKEN" not in env
    assert "/root" not in env["PATH"] and env["TERM"] == "xterm-256color"
    assert env["CARME_ENTER"] == "1" and env["CARME_SERVER_NAME"] == "exp2"
    assert "CARME_ENTER" not in step_env(ACCOUNT, TARGET, term=None, peer="", gateway_env={}, enter=False)


# ---- the relay's owner check ---------------------------------------------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001        0 1 1 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10002        0 2 1 0 0 10 0
   2: 0100007F:22B8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 10002        0 3 1 0 0 10 0
   3: 0A000001:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10002        0 4 1 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 5 1 0 0 10 0
"""


def test_the_relay_finds_loopback_listeners_and_their_owners():
    tables = {"tcp": TCP, "tcp6": TCP6}
    assert relay.listeners(8888, tables) == [("127.0.0.1", 10001)]  # the established line is no listener
    assert relay.listeners(8080, tables) == [("127.0.0.1", 10002)]  # 0.0.0.0 accepts the loopback
    assert relay.listeners(8081, tables) == [("::1", 10001)]
    assert relay.listeners(80, tables) == []  # bound to 10.0.0.1 only: not reachable on the loopback


def test_the_relay_connects_only_to_the_users_own_port():
    assert relay.choose(8888, [("127.0.0.1", 10001)], 10001) == ("127.0.0.1", "")
    address, why = relay.choose(8080, [("127.0.0.1", 10002)], 10001)
    assert address is None and "another user's" in why
    assert relay.choose(9, [], 10001)[1] == "nothing listens on port 9 on this node's loopback"


def test_the_relay_pumps_a_real_connection_and_refuses_others():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "carme_services.ssh.relay", str(port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    conn, _ = server.accept()
    assert child.stderr.readline().decode().startswith(f"carme-relay: connected 127.0.0.1:{port}")
    child.stdin.write(b"ping")
    child.stdin.close()
    assert conn.recv(4) == b"ping"
    conn.sendall(b"pong")
    conn.close()
    assert child.stdout.read() == b"pong" and child.wait(10) == 0
    server.close()
    refused = subprocess.run([sys.executable, "-m", "carme_services.ssh.relay", str(port)], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.startswith("carme-relay: refused nothing listens")
    if os.getuid() == 0:  # root's socket, relayed as another user: refused as another user's
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        other = subprocess.run([sys.executable, "-m", "carme_services.ssh.relay", str(server.getsockname()[1])],
                               capture_output=True, text=True, user=65534)
        server.close()
        assert other.returncode == 2 and "another user's" in other.stderr


# ---- keys and the store --------------------------------------------------------------------------


def public_key(comment="me@laptop", alg="ssh-ed25519", **kw) -> str:
    return asyncssh.generate_private_key(alg, comment=comment, **kw).export_public_key().decode()


def test_a_public_key_is_parsed_and_stored_without_its_comment_in_the_key():
    fields = parse_public_key(public_key())
    assert fields["algorithm"] == "ssh-ed25519" and fields["comment"] == "me@laptop"
    assert fields["fingerprint"].startswith("SHA256:") and "me@laptop" not in fields["public_key"]


@pytest.mark.parametrize("text, message", [
    ("", "paste one public key"),
    ("ssh-ed25519 AAAA", "not an OpenSSH public key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "PRIVATE key"),
    ("ssh-ed25519 AAAA\nssh-ed25519 BBBB", "one line"),
])
def test_bad_keys_are_refused_naming_the_field(text, message):
    with pytest.raises(ValueError, match=f"^key: .*{message}"):
        parse_public_key(text)


def test_short_rsa_keys_are_refused():
    with pytest.raises(ValueError, match="RSA key of 2048 bits; at least 3072"):
        parse_public_key(public_key(alg="ssh-rsa", key_size=2048))


def test_the_store_keeps_keys_per_user_and_logs_sessions(tmp_path):
    db = database(f"sqlite:///{tmp_path}/ssh.sqlite")
    db.upgrade()
    store = SshStore(db)
    fields = parse_public_key(public_key())
    entry = store.add_key("alice", **fields)
    with pytest.raises(KeyExists, match="registered already"):
        store.add_key("alice", **fields)
    store.add_key("bob", **fields)  # the same key may be bob's too: each checks only their own
    assert [k["fingerprint"] for k in store.keys("alice")] == [fields["fingerprint"]]
    assert store.public_keys("alice") == [(fields["fingerprint"], fields["public_key"])]
    store.key_used("alice", fields["fingerprint"])
    assert store.keys("alice")[0]["last_used_at"] is not None
    assert not store.remove_key("bob", entry["id"]) and store.remove_key("alice", entry["id"])
    assert store.keys("alice") == []
    sid = store.session_started(user="alice", server="", job_id="42", peer="127.0.0.1 5 127.0.0.1 2222",
                                kind="exec", detail="id")
    store.session_ended(sid, bytes_in=3, bytes_out=6, outcome="exit 0")
    (row,) = store.sessions("alice")
    assert (row["kind"], row["bytes_in"], row["bytes_out"], row["outcome"]) == ("exec", 3, 6, "exit 0")
    assert store.sessions("bob") == []


def test_the_migration_and_the_models_agree(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from alembic import command

    from carme_core.db import version_table
    from carme_services.ssh.store import SERVICE, Base

    db = database(f"sqlite:///{tmp_path}/ssh.sqlite")
    db.upgrade()
    table = version_table(SERVICE)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": table, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    command.downgrade(db.alembic_config(), "base")
    assert set(sa.inspect(db.engine).get_table_names()) == {table}


# ---- settings and wiring -------------------------------------------------------------------------


def test_the_wiring_runs_the_gateway_with_its_store_key_and_relay():
    wiring = hub_service(ServiceSettings("ssh", {"ssh_port": 2022}, state_dir="/var/lib/carme", python="/opt/py"))
    spec = wiring["service"]
    assert spec["name"] == "carme-ssh" and spec["command"] == ["/opt/py", "-m", "carme_services.ssh.service"]
    own = next(r for r in wiring["roles"] if r["name"] == "carme-ssh")
    assert {"read:users", "read:servers", "admin:server_state"} <= set(own["scopes"])
    assert f"{KEYS_SCOPE}!user" in wiring["user_scopes"] and ADMIN_SCOPE in wiring["custom_scopes"]
    assert "server_scopes" not in wiring  # a session's own token never logs in over SSH for it


@pytest.mark.parametrize("values, message", [({"ssh_port": 0}, "ssh_port"), ({"allowed_roles": ["guest"]}, "guest"),
                                             ({"max_failures": 0}, "max_failures"), ({"sshport": 1}, "no setting")])
def test_bad_settings_stop_the_hub_naming_them(values, message):
    with pytest.raises(ValueError, match=message):
        hub_service(ServiceSettings("ssh", values))


def test_a_readable_host_key_is_refused(tmp_path):
    service = SshService(host_key_path=str(tmp_path / "keys" / "host_key"))
    key = service.host_key()
    assert oct((tmp_path / "keys" / "host_key").stat().st_mode & 0o777) == "0o600"
    assert service.host_key().get_fingerprint() == key.get_fingerprint()  # kept across restarts
    (tmp_path / "keys" / "host_key").chmod(0o644)
    with pytest.raises(SystemExit, match="readable by others"):
        service.host_key()
