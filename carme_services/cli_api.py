"""What the admin commands of `carme` share: the hub's URL and token, requests, progress, tables, times.

The hub's URL is `--url`, else $JUPYTERHUB_URL, else $CARME_URL, else http://127.0.0.1:8000; the
token is $JUPYTERHUB_API_TOKEN (a token from the hub's Token page, or a service's). Requests use
the standard library only. A request that takes a while says so on stderr (`progress`), so
stdout stays the answer (a table, JSON or CSV) for scripts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from .quota.client import ClientError, shown, table

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = ("JUPYTERHUB_URL", "CARME_URL")
TOKEN_ENV = "JUPYTERHUB_API_TOKEN"

__all__ = ["ClientError", "Hub", "connect", "progress", "shown", "table", "when", "ago", "hub_url"]


def hub_url(option: str | None = None) -> str:
    return option or next((os.environ[k] for k in URL_ENV if os.environ.get(k)), DEFAULT_URL)


def connect(url: str | None = None, timeout: float = 300) -> Hub:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise ClientError(f"{TOKEN_ENV} is not set (a token of yours from the hub's Token page)", 2)
    return Hub(hub_url(url), token, timeout)


@dataclass(frozen=True)
class Hub:
    url: str  # the hub's public URL, e.g. https://carme.example.org
    token: str
    timeout: float = 300

    def request(self, method: str, path: str, body: dict | None = None, accept: str = "application/json",
                **query) -> tuple[bytes, str]:
        """`method` <url>/`path` (relative to the hub's root) with the token: (the body, its content type);
        ClientError with the API's message on a refusal or when the hub cannot be reached."""
        query = {k: v for k, v in query.items() if v is not None}
        url = f"{self.url.rstrip('/')}/{path.lstrip('/')}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"token {self.token}", "Accept": accept,
                   **({"Content-Type": "application/json"} if data is not None else {})}
        try:
            request = urllib.request.Request(url, data, headers, method=method)
        except ValueError as e:
            raise ClientError(f"--url {self.url}: {e}", 2) from None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                return r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise ClientError(f"{method} {path}: HTTP {e.code}: {error_message(e)}") from None
        except OSError as e:  # URLError, or the connection lost or timed out while reading
            raise ClientError(f"cannot reach {self.url}: {getattr(e, 'reason', e)}") from None

    def json(self, method: str, path: str, body: dict | None = None, **query):
        answer, _ = self.request(method, path, body, **query)
        try:
            return json.loads(answer or b"{}")
        except ValueError:
            raise ClientError(f"{method} {path}: the answer is not JSON (is {self.url} the hub?)") from None

    def text(self, path: str, accept: str, **query) -> str:
        answer, _ = self.request("GET", path, accept=accept, **query)
        return answer.decode("utf-8", errors="replace")


def error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read()).get("message") or e.reason
    except (ValueError, AttributeError):
        return str(e.reason)


@contextmanager
def progress(what: str, after: float = 1.0, every: float = 5.0, stream=None):
    """Say on stderr that `what` is under way if it takes longer than `after` seconds, then every
    `every` seconds how long it has taken, and when it is done."""
    stream = stream or sys.stderr
    began, done = time.monotonic(), threading.Event()
    said = []

    def tick():
        wait = after
        while not done.wait(wait):
            stream.write(f"carme: {what}... {time.monotonic() - began:.0f} s\n" if said else f"carme: {what}...\n")
            stream.flush()
            said.append(True)
            wait = every

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if said:
            stream.write(f"carme: {what}: done in {time.monotonic() - began:.1f} s\n")
            stream.flush()


def when(epoch) -> str:
    """An epoch time as local ISO 8601 to the minute ("-" for none)."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(float(epoch), timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")


def ago(seconds) -> str:
    """A duration in words: 45s, 12m, 3h05m, 2d04h ("-" for none)."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
