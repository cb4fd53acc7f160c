"""Keep the catalog current without a hub restart: poll the files' names, sizes and mtimes.

:class:`CatalogSource` holds the latest :class:`Catalog`. `current()` returns it, and at most
once every `interval` seconds first compares a fingerprint of the files (the set of names and
each file's mtime, size and inode, from `os.stat`) with the one of the last load; only when it
differs are the files read again. No inotify: it works on NFS/BeeGFS and in containers alike.

Threads and asyncio: `current()` is thread-safe and never waits for another caller's check
(whoever holds the lock checks; the others get the catalog in hand). Inside an event loop (the
hub, a service) nothing may touch a slow shared file system on the loop: there, call it in a
worker thread, `await asyncio.to_thread(source.current)`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from .catalog import Catalog
from .image_reference import UserEntryRules
from .loader import list_site_files, list_user_files, load_catalog

log = logging.getLogger(__name__)

Fingerprint = tuple


class CatalogSource:
    """The latest catalog of a site directory (and user-defined store), re-read when files change.

    `user_rules`: the site's rules for user-defined images (schemes, prefixes) that every load
    applies to the stored entries (see `load_catalog`); give them whenever there is a store.
    """

    def __init__(
        self,
        directory: str | Path,
        user_directory: str | Path | None = None,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[Catalog, Catalog | None], None] | None = None,
        user_rules: UserEntryRules | None = None,
    ):
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        self.directory = Path(directory)
        self.user_directory = Path(user_directory) if user_directory is not None else None
        self.interval = interval
        self.on_reload = on_reload
        self.user_rules = user_rules
        self._clock = clock
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._fingerprint: Fingerprint | None = None
        self._checked_at = 0.0
        self.loaded_at: float | None = None  # wall-clock time of the last (re)load
        self.reload()

    def current(self) -> Catalog:
        """The latest catalog; re-read first if `interval` has passed and the files changed."""
        if self._clock() - self._checked_at >= self.interval and self._lock.acquire(blocking=False):
            try:
                if self._clock() - self._checked_at >= self.interval:
                    self._check()
            finally:
                self._lock.release()
        return self._catalog

    def reload(self) -> Catalog:
        """Read the files now, whatever the interval (e.g. right after a user entry was added)."""
        with self._lock:
            self._load(self._take_fingerprint())
            return self._catalog

    def _check(self) -> None:
        fingerprint = self._take_fingerprint()
        if fingerprint != self._fingerprint:
            self._load(fingerprint)
        else:
            self._checked_at = self._clock()

    def _load(self, fingerprint: Fingerprint) -> None:
        # fingerprint first: a change made while loading shows up at the next check
        old = self._catalog
        new = load_catalog(self.directory, self.user_directory, previous=old, user_rules=self.user_rules)
        self._catalog, self._fingerprint = new, fingerprint
        self._checked_at = self._clock()
        self.loaded_at = time.time()
        self._report(new, old)

    def _take_fingerprint(self) -> Fingerprint:
        files, problems = list_site_files(self.directory)
        if self.user_directory is not None:
            more_files, more_problems = list_user_files(self.user_directory)
            files, problems = files + more_files, problems + more_problems
        stats = []
        for file in files:
            try:
                st = os.stat(file.path)
                stats.append((str(file.path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError as e:
                stats.append((str(file.path), type(e).__name__))
        return tuple(stats), tuple(problems)

    def _report(self, new: Catalog, old: Catalog | None) -> None:
        known = set(old.problems) if old is not None else set()
        for problem in new.problems:
            if problem not in known:
                log.warning("container catalog: %s", problem)
        if old is not None:
            log.info("container catalog reloaded: %d entries, %d problems",
                     len(new.entries), len(new.problems))
        if self.on_reload is not None:
            try:
                self.on_reload(new, old)
            except Exception:  # a broken callback must not stop the catalog from updating
                log.exception("container catalog: on_reload callback failed")
