"""Files written in one step: a reader sees the old file or the new one, never a part.

`write_atomically(path, text, mode)` writes a temporary file beside `path` (same directory, so the
rename stays on one file system), flushes and fsyncs it, gives it `mode` (whatever the umask), then
renames it over `path`, or, with `replace=False`, links it to `path`: an atomic create that raises
FileExistsError when `path` exists (two writers of one name cannot both win). The directory is
fsynced after, so the new name survives a crash. The temporary file never stays behind, whatever
fails. Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, text: str, mode: int, *, replace: bool = True) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), mode)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory: the names made or replaced in it are on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
