"""carme-ssh's page and API (JSON under <prefix>api/):

    GET    keys               the SSH keys page: your keys, add one, remove one, how to connect  keys (own)
    GET    api/keys           your public keys (fingerprint, comment, added, last used)           keys (own)
    POST   api/keys           {key: "ssh-ed25519 AAAA... comment"} register one                   keys (own)
    DELETE api/keys/ID        remove one of yours                                                 keys (own)
    GET    api/sessions       the SSH session log: yours (admins: everyone's, ?user=U)            keys (own) | admin

Scopes are checked with JupyterHub's check_scopes inside the handlers (`custom:carme-ssh:keys!user`).
"""

from __future__ import annotations

from datetime import datetime, timezone

import asyncssh
from tornado import web

from ..base import CarmeServiceHandler
from .service import ADMIN_SCOPE, KEYS_SCOPE
from .store import KeyExists

MAX_KEY_CHARS = 16384
ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
              "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MIN_RSA_BITS = 3072


def parse_public_key(text: str) -> dict:
    """The fields to store for one OpenSSH public key line; ValueError naming the field otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError("key: paste one public key, e.g. the line of ~/.ssh/id_ed25519.pub")
    if len(text) > MAX_KEY_CHARS or "\n" in text or "\r" in text:
        raise ValueError(f"key: one line of at most {MAX_KEY_CHARS} characters")
    if "PRIVATE KEY" in text:
        raise ValueError("key: that is a PRIVATE key; never share it. Paste the .pub file's line")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ValueError(f"key: not an OpenSSH public key ({e})") from None
    algorithm = key.get_algorithm()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"key: {algorithm} keys are not accepted (use {', '.join(ALGORITHMS[:2])} or ssh-rsa)")
    if algorithm == "ssh-rsa" and getattr(key, "pyca_key", None) is not None:
        bits = key.pyca_key.key_size
        if bits < MIN_RSA_BITS:
            raise ValueError(f"key: an RSA key of {bits} bits; at least {MIN_RSA_BITS}")
    comment = (key.get_comment() or "")[:200]
    key.set_comment(None)
    return {"fingerprint": key.get_fingerprint("sha256"), "algorithm": algorithm,
            "public_key": key.export_public_key("openssh").decode().strip(), "comment": comment}


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class SshHandler(CarmeServiceHandler):
    @property
    def store(self):
        return self.service.store

    def is_admin(self) -> bool:
        return self.has_scope(ADMIN_SCOPE)

    def require_own(self) -> None:
        self.require(self.has_scope(KEYS_SCOPE, user=self.username), f"SSH keys need {KEYS_SCOPE} for yourself")

    def add_key(self, text: str) -> dict:
        try:
            fields = parse_public_key(text)
            entry = self.store.add_key(self.username, **fields)
        except KeyExists as e:
            raise web.HTTPError(409, str(e)) from None
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        self.log.info("%s added the SSH key %s (%s)", self.username, entry["fingerprint"], entry["comment"])
        return entry

    def remove_key(self, key_id: int) -> None:
        if not self.store.remove_key(self.username, key_id):
            raise web.HTTPError(404, f"key {key_id}: not one of your keys")
        self.log.info("%s removed SSH key %s", self.username, key_id)


class KeysPage(SshHandler):
    @web.authenticated
    def get(self, notice: str = "", kind: str = "success"):
        self.require_own()
        self.finish(self.render_page("ssh_keys.html", keys=self.store.keys(self.username), notice=notice,
                                     notice_kind=kind, hint=self.service.connect_hint(self.username),
                                     sessions=self.store.sessions(self.username, limit=20),
                                     allowed=self.role in self.service.allowed_roles, when=when))

    @web.authenticated
    def post(self):
        self.require_own()
        action = self.get_body_argument("action", "add")
        try:
            if action == "remove":
                self.remove_key(int(self.get_body_argument("id", "0") or 0))
                return self.get("The key was removed.")
            entry = self.add_key(self.get_body_argument("key", ""))
        except web.HTTPError as e:
            self.set_status(e.status_code)
            return self.get(e.log_message, "danger")
        return self.get(f"Added {entry['algorithm']} key {entry['fingerprint']}.")


class KeysApiHandler(SshHandler):
    @web.authenticated
    def get(self):
        self.require_own()
        self.write_json({"keys": self.store.keys(self.username)})

    @web.authenticated
    def post(self):
        self.require_own()
        self.write_json(self.add_key(self.json_body().get("key", "")), status=201)


class KeyHandler(SshHandler):
    @web.authenticated
    def delete(self, key_id: str):
        self.require_own()
        self.remove_key(int(key_id))
        self.set_status(204)
        self.finish()


class SessionsApiHandler(SshHandler):
    @web.authenticated
    def get(self):
        user = self.get_argument("user", "")
        if self.is_admin():
            rows = self.store.sessions(user or None)
        else:
            self.require_own()
            self.require(user in ("", self.username), f"the SSH sessions of {user} need {ADMIN_SCOPE}")
            rows = self.store.sessions(self.username)
        self.write_json({"sessions": rows})
