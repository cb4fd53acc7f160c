"""The cockpit's reads of SLURM's accounting, cached, and of the choices carme-sessions remembered.

- `SacctReader`: one `sacct` per window (bounded by `history.parse_window`), kept for `ttl`
  seconds; asks for the same window at the same time share one call; at most `max_entries`
  windows are kept. Never a SLURM call per page view of the same window.
- `remembered_choices(url, job_ids)`: the options (image, ...) of those jobs, from carme-sessions'
  store (read only, never migrated from here); {} when that store does not exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from carme_slurm.commands import command_env, run_command

from ..sessions.history import Choice
from .history import HistoryJob, Window, parse_history, sacct_argv


async def run_sacct(window: Window, timeout: float) -> list[HistoryJob]:
    out = await run_command(sacct_argv(window), env=command_env(), timeout=timeout)
    return await asyncio.to_thread(parse_history, out)


class SacctReader:
    """`read(window)` -> (jobs, when they were read), from a cache of recent windows."""

    def __init__(self, fetch: Callable[[Window], Awaitable[list[HistoryJob]]], ttl: float, max_entries: int = 16):
        self.fetch, self.ttl, self.max_entries = fetch, ttl, max_entries
        self.cache: OrderedDict[Window, tuple[float, list[HistoryJob]]] = OrderedDict()
        self.locks: dict[Window, asyncio.Lock] = {}
        self.calls = 0

    async def read(self, window: Window) -> tuple[list[HistoryJob], float]:
        lock = self.locks.setdefault(window, asyncio.Lock())
        async with lock:
            cached = self.cache.get(window)
            if cached is not None and time.time() - cached[0] < self.ttl:
                self.cache.move_to_end(window)
                return cached[1], cached[0]
            self.calls += 1
            jobs = await self.fetch(window)
            at = time.time()
            self.cache[window] = (at, jobs)
            self.cache.move_to_end(window)
            while len(self.cache) > self.max_entries:
                old, _ = self.cache.popitem(last=False)
                self.locks.pop(old, None)
            return jobs, at


def _store_exists(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True
    return bool(parsed.database) and parsed.database != ":memory:" and os.path.exists(parsed.database)


def remembered_choices(url: str, job_ids: Iterable[str]) -> dict[str, Choice]:
    """{job id: Choice} of `job_ids` from carme-sessions' store at `url` ("" or none there: {})."""
    ids = sorted(set(job_ids))
    if not url or not ids or not _store_exists(url):
        return {}
    from ..sessions.store import ChoiceRow, database  # its tables, read only

    db = database(url)
    try:
        if not sa.inspect(db.engine).has_table(ChoiceRow.__tablename__):
            return {}
        found = {}
        with db.session() as s:
            for chunk in range(0, len(ids), 500):
                query = sa.select(ChoiceRow).where(ChoiceRow.job_id.in_(ids[chunk:chunk + 500]))
                for row in s.scalars(query):
                    found[row.job_id] = Choice(row.job_id, row.user_name, row.server_name, json.loads(row.options),
                                               row.seen_at.timestamp())
        return found
    finally:
        db.engine.dispose()
