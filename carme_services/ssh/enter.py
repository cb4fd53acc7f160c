"""How a carme-ssh session enters a job (pure: argv and environment, nothing run here).

Every session is a job step of the user's own running job, started as the user (the gateway,
root, starts srun with the user's uid, gid and groups; no shell, no su, no PAM in between):

    srun --jobid=J --overlap -N1 -n1 -w NODE --chdir=HOME [--pty] \\
        bash -c "<the job's batch script>" carme-enter COMMAND...      (CARME_ENTER=1)

`--overlap` shares the job's allocation instead of waiting for free CPUs, so the step lands in
the job's cgroup with its GPUs (SLURM sets CUDA_VISIBLE_DEVICES as for the server) and its
limits. `--unbuffered`: srun line-buffers a step's output by default, which stalls any protocol
that waits for an answer without a newline in it (sftp, a forward, a progress bar). The batch script is SLURM's own copy of what the spawner submitted; in enter mode it
execs COMMAND in the same image with the same binds and scratch as the server, instead of the
server (see slurm_templates/carme_job.sh.j2). So there is one definition of "the job's
container", and a session can do nothing the user could not do in her own job.

Port forwarding runs the relay (`carme_services.ssh.relay`, stdlib only) as a step too, outside
the container: it connects from inside the job as the user, never from the gateway as root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .target import Target

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STEP_NAME = "carme-ssh"
#: variables of the gateway's own environment a step may need (srun finds its cluster with them)
PASSED = ("SLURM_CONF", "LANG", "LC_ALL")


@dataclass(frozen=True)
class StepSite:
    """The site's commands (the service's traitlets map onto these)."""

    srun: str = "srun"
    shell: str = "/bin/bash"
    sftp_server: str = "/usr/lib/openssh/sftp-server"
    relay: tuple[str, ...] = ("python3", "-m", "carme_services.ssh.relay")
    path: str = DEFAULT_PATH  # the steps' PATH


@dataclass(frozen=True)
class Account:
    """The user's passwd entry on the gateway host (the same directory as the nodes')."""

    name: str
    home: str
    shell: str = "/bin/bash"
    uid: int | None = None
    gid: int | None = None


def step_argv(site: StepSite, target: Target, account: Account, command: Sequence[str], *, pty: bool = False,
              script: str | None = None) -> list[str]:
    """The argv of one session step: `command` in the job's container when `script` (the job's batch
    script) is given, else on the job's node outside it (the relay)."""
    argv = [site.srun, f"--jobid={target.job_id}", "--overlap", "--nodes=1", "--ntasks=1",
             f"--nodelist={target.node}", f"--chdir={account.home}", f"--job-name={STEP_NAME}", "--quiet",
             "--unbuffered", "--export=ALL"]
    if pty:
        argv.append("--pty")
    if script is not None:
        argv += ["bash", "-c", script, "carme-enter"]
    return [*argv, *command]


def shell_command(site: StepSite, command: str | None) -> list[str]:
    """`ssh host 'cmd'` runs `SHELL -c cmd` as OpenSSH does; a plain `ssh host` a login shell."""
    return [site.shell, "-c", command] if command is not None else [site.shell, "-l"]


def sftp_command(site: StepSite) -> list[str]:
    return [site.sftp_server]


def relay_command(site: StepSite, port: int) -> list[str]:
    return [*site.relay, str(port)]


def step_env(account: Account, target: Target, *, term: str | None, peer: str, gateway_env: Mapping[str, str],
             enter: bool = True, path: str = DEFAULT_PATH) -> dict[str, str]:
    """The step's environment: the user's, never the gateway's (no root HOME, no hub token)."""
    env = {k: v for k, v in gateway_env.items() if k in PASSED}
    env.update({"PATH": path, "HOME": account.home, "USER": account.name, "LOGNAME": account.name,
                "SHELL": account.shell, "CARME_SSH": "1", "CARME_SERVER_NAME": target.server,
                "SSH_CONNECTION": peer})
    if enter:
        env["CARME_ENTER"] = "1"
    if term:
        env["TERM"] = term
    return env


def account_of(name: str) -> Account:
    """The user's passwd entry; LookupError if the gateway host does not know the user."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LookupError(f"carme: {name} has no account on the SSH gateway's host") from None
    if entry.pw_uid == 0:
        raise LookupError(f"carme: {name} is root's account; SSH never enters a job as root")
    return Account(name, entry.pw_dir or "/", entry.pw_shell or "/bin/bash", entry.pw_uid, entry.pw_gid)


def default_relay() -> tuple[str, ...]:
    """The relay through this Python (the nodes have Carme's venv at the same path, as the launcher)."""
    import sys

    return (sys.executable, "-m", "carme_services.ssh.relay")
