"""The current announcements as one file the hub reads: carme-announcements writes it, the hub's pages show it.

carme-announcements keeps the notices in its store and, after every change (and at its start),
writes the ones not yet expired to `<carme.state_dir>/carme-announcements.json` atomically
(`write_notices`: a temporary file, fsync, rename; mode 0644, no secrets in it). The hub never
asks the service: `JupyterHub.template_vars` holds callables (`template_vars(path)`) that JupyterHub
calls with the user on each page it renders; they read this file through an mtime cache
(`NoticeFile`), keep the notices with start <= now < expiry and return them as escaped HTML for
page.html's `announcement` (and `announcement_spawn`, `announcement_home`, which spawn.html and
home.html prefer). A missing, partial or broken file shows nothing (and is logged once).

Standard library only: the hub config (carme_hub.config) imports this without importing the service.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .files import write_atomically

FILE_NAME = "carme-announcements.json"
FILE_MODE = 0o644  # the text users see anyway; no secrets
FORMAT = 1
SEVERITIES = ("info", "warning", "danger")
LABELS = {"info": "Notice", "warning": "Warning", "danger": "Important"}
#: page.html's variables: `announcement` on every page; spawn.html and home.html prefer their own
TEMPLATE_VARS = ("announcement", "announcement_spawn", "announcement_home")

log = logging.getLogger("carme.announcements")


def default_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / FILE_NAME


# ---- writing (the service) -----------------------------------------------------------------------


def write_notices(path: str | os.PathLike, notices: Iterable[Mapping], now: float | None = None) -> None:
    """Replace the file at `path` by `notices` (dicts with id, severity, text, start, expiry as epoch
    seconds) in one rename: a reader sees the old file or the new one, never a part."""
    path = Path(path)
    document = {"format": FORMAT, "written_at": time.time() if now is None else now,
                "announcements": [{"id": n["id"], "severity": n["severity"], "text": n["text"],
                                   "start": float(n["start"]), "expiry": float(n["expiry"])} for n in notices]}
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1)
    write_atomically(path, text, FILE_MODE)


# ---- reading (the hub, and the services' own pages) -------------------------------------------------


def _notice(raw) -> dict | None:
    """One notice of the file, checked (a bad one is dropped, not shown half)."""
    if not isinstance(raw, Mapping):
        return None
    severity, text = raw.get("severity"), raw.get("text")
    try:
        start, expiry = float(raw["start"]), float(raw["expiry"])
    except (KeyError, TypeError, ValueError):
        return None
    if severity not in SEVERITIES or not isinstance(text, str) or not text or not expiry > start:
        return None
    return {"id": raw.get("id"), "severity": severity, "text": text, "start": start, "expiry": expiry}


class NoticeFile:
    """The file's notices, read again only when the file changes (its mtime, size or inode)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._key: tuple | None = None
        self._notices: list[dict] = []
        self._lock = threading.Lock()
        self._reported: tuple | None = None

    def notices(self) -> list[dict]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._notices = None, []
            return []
        except OSError as e:
            self._report(("stat", str(e)), "cannot read %s: %s", self.path, e)
            return []
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if key != self._key:
                self._notices = self._read(key)
                self._key = key
            return self._notices

    def _read(self, key: tuple) -> list[dict]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            items = document["announcements"] if isinstance(document, dict) else None
            if not isinstance(items, list):
                raise ValueError("no list of announcements")
        except (OSError, ValueError, KeyError) as e:
            self._report(key, "ignoring %s: %s", self.path, e)
            return []
        notices = [n for n in (_notice(raw) for raw in items) if n is not None]
        if len(notices) != len(items):
            self._report(key, "%s: ignored %d malformed announcements", self.path, len(items) - len(notices))
        return notices

    def _report(self, key, message: str, *args) -> None:
        if key != self._reported:  # once per version of the file, not per page view
            self._reported = key
            log.warning(message, *args)

    def __deepcopy__(self, memo):
        return self

    def current(self, now: float | None = None) -> list[dict]:
        """The notices shown now: start <= now < expiry, most severe first, then the newest start."""
        now = time.time() if now is None else now
        return current(self.notices(), now)


def current(notices: Iterable[Mapping], now: float) -> list[dict]:
    shown = [dict(n) for n in notices if n["start"] <= now < n["expiry"]]
    return sorted(shown, key=lambda n: (-SEVERITIES.index(n["severity"]), -n["start"], str(n["id"])))


def notices_html(notices: Iterable[Mapping]) -> str:
    """The notices as HTML for page.html's `announcement` (inserted there with `| safe`): every text escaped."""
    parts = []
    for n in notices:
        severity = n["severity"] if n["severity"] in SEVERITIES else "info"
        text = html.escape(n["text"]).replace("\n", "<br>")
        parts.append(f'<div class="carme-announcement text-start my-1" data-severity="{severity}" '
                     f'data-announcement-id="{html.escape(str(n.get("id", "")))}">'
                     f'<span class="badge text-bg-{severity} me-2">{LABELS[severity]}</span>{text}</div>')
    return "".join(parts)


class AnnouncementVar:
    """A `JupyterHub.template_vars` value: called with the page's user (None when logged out), the
    current notices as HTML ("" for nobody logged in, or none current)."""

    def __init__(self, source: NoticeFile, clock=time.time):
        self.source, self.clock = source, clock

    def __call__(self, user=None) -> str:
        if user is None:
            return ""
        try:
            return notices_html(self.source.current(self.clock()))
        except Exception:  # noqa: BLE001 - a page must render whatever the file holds
            log.exception("announcements: cannot render %s", self.source.path)
            return ""

    def __repr__(self) -> str:
        return f"AnnouncementVar({str(self.source.path)!r})"

    def __deepcopy__(self, memo):  # the hub copies its config: one reader (its lock, its cache) stays shared
        return self


def template_vars(path: str | os.PathLike, clock=time.time) -> dict:
    """{page.html variable: AnnouncementVar} reading the one file at `path`."""
    var = AnnouncementVar(NoticeFile(path), clock)
    return {name: var for name in TEMPLATE_VARS}


_shared: dict[str, NoticeFile] = {}


def current_html(path: str | os.PathLike | None, now: float | None = None) -> str:
    """The current notices of the file at `path` as HTML ("" without a path): for a service's own pages."""
    if not path:
        return ""
    source = _shared.setdefault(str(path), NoticeFile(path))
    return notices_html(source.current(now))
