"""The hub's auth_state key (the LDAP uid/gid/home are stored encrypted with it)."""

from __future__ import annotations

import os
import pathlib
import secrets


def crypt_key(path: pathlib.Path) -> str:
    """The hub's auth_state key from `path` (made on first use: 32 random bytes, hex, mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            raise SystemExit(f"{path}: the auth_state key must not be readable by group or others (chmod 0600)")
        key = path.read_text().strip()
        if len(key) != 64:
            raise SystemExit(f"{path}: expected 64 hex digits (the auth_state key); remove it to make a new one")
        return key
    with os.fdopen(fd, "w") as f:
        key = secrets.token_hex(32)
        f.write(key + "\n")
    return key
