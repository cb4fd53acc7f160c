"""Read what a running job really has, as an attacker inside it would (the test runs as root)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def job_environments(user: str) -> list[dict[str, str]]:
    """Environments of `user`'s processes that carry a JupyterHub server token."""
    uid = pwd.getpwnam(user).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if "JUPYTERHUB_API_TOKEN" in env:
            found.append(env)
    return found


def server_token(user: str, hub_port: int, server: str = "") -> str:
    """The API token in the environment of `user`'s running server job (named `server`) of the hub on `hub_port`."""
    tokens = {
        env["JUPYTERHUB_API_TOKEN"]
        for env in job_environments(user)
        if env.get("JUPYTERHUB_SERVER_NAME", "") == server
        and env.get("JUPYTERHUB_API_URL", "").startswith(f"http://127.0.0.1:{hub_port}/")
    }
    if len(tokens) != 1:
        raise AssertionError(f"expected one server token for {user}/{server}, found {len(tokens)}")
    return tokens.pop()


def write_user_file(user: str, relative: str, text: str) -> Path:
    """Write a file in the user's home, owned by the user (like the user would)."""
    account = pwd.getpwnam(user)
    path = Path(account.pw_dir) / relative
    for parent in reversed(path.relative_to(account.pw_dir).parents):
        directory = Path(account.pw_dir) / parent
        if not directory.exists():
            directory.mkdir(mode=0o755)
            os.chown(directory, account.pw_uid, account.pw_gid)
    path.write_text(text)
    os.chown(path, account.pw_uid, account.pw_gid)
    return path
