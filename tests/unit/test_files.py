"""carme_core.files.write_atomically: one step, the mode asked for, nothing left behind."""

import os
import stat

import pytest

from carme_core.files import write_atomically


def test_replaces_in_one_step_with_the_mode_asked_whatever_the_umask(tmp_path):
    path = tmp_path / "notices.json"
    path.write_text("old")
    old = os.umask(0o077)
    try:
        write_atomically(path, "new ünïcode", 0o644)
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "new ünïcode"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["notices.json"]


def test_without_replace_an_existing_name_is_refused_and_kept(tmp_path):
    path = tmp_path / "entry.yaml"
    write_atomically(path, "first", 0o600, replace=False)
    with pytest.raises(FileExistsError):
        write_atomically(path, "second", 0o600, replace=False)
    assert path.read_text() == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["entry.yaml"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "tally.json"
    path.write_text("old")

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        write_atomically(path, "new", 0o600)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["tally.json"]
