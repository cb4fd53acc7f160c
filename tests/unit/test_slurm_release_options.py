"""Issue 24: the view reads SLURM's release once (`sbatch --version`, no call to slurmctld) and gives
its JSON queries what a newer release offers: SLURM_JSON=compact from 25.05 (tag slurm-25-05-0-1,
squeue.1 and src/interfaces/serializer.h); older releases get nothing new. Run through the view with
stand-in SLURM commands on PATH that record their environment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from carme_slurm import SlurmView
from carme_slurm.versions import parse_version, query_env, version_words

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"


@pytest.mark.parametrize("text, version", [
    ("slurm-wlm 22.05.8\n", (22, 5, 8)), ("slurm 23.02.7", (23, 2, 7)), ("slurm 23.11.10", (23, 11, 10)),
    ("slurm 24.05.0", (24, 5, 0)), ("slurm 24.11.5", (24, 11, 5)), ("slurm 25.05.0-0rc1", (25, 5, 0)),
])
def test_versions_are_read_as_the_commands_print_them(text, version):
    assert parse_version(text) == version
    assert version_words(version).startswith(f"{version[0]}.{version[1]:02d}.")


@pytest.mark.parametrize("text", ["", "squeue: error: something", "slurm x.y"])
def test_anything_else_is_not_a_version(text):
    with pytest.raises(ValueError, match="not a SLURM version"):
        parse_version(text)


def test_only_25_05_and_later_get_compact_json():
    assert query_env(None) == {} and query_env((22, 5, 8)) == {} and query_env((24, 11, 5)) == {}
    assert query_env((25, 5, 0)) == query_env((25, 11, 1)) == {"SLURM_JSON": "compact"}


def standin_slurm(tmp_path: Path, release: str) -> Path:
    """sbatch --version prints `release`; squeue/sinfo --json print an empty answer and record SLURM_JSON."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "env.log"
    jobs = json.dumps({"jobs": [], "errors": []})
    nodes = (FIXTURES / "sinfo-22.05-idle.json").read_text().replace("'", "'\\''")
    (bindir / "sbatch").write_text(f"#!/bin/sh\necho 'slurm {release}'\n")
    (bindir / "squeue").write_text(f"#!/bin/sh\necho \"squeue ${{SLURM_JSON:-}}\" >> {log}\necho '{jobs}'\n")
    (bindir / "sinfo").write_text(f"#!/bin/sh\necho \"sinfo ${{SLURM_JSON:-}}\" >> {log}\necho '{nodes}'\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir


@pytest.mark.parametrize("release, expected", [("22.05.8", ""), ("25.05.1", "compact")])
def test_the_view_asks_once_and_passes_the_option_to_squeue_and_sinfo(tmp_path, monkeypatch, release, expected):
    monkeypatch.setenv("PATH", f"{standin_slurm(tmp_path, release)}:/usr/bin:/bin")
    view = SlurmView()

    async def twice():
        for _ in range(2):
            await view._squeue_all()
            await view._sinfo_nodes()

    asyncio.run(twice())
    assert view.slurm_version == parse_version(f"slurm {release}")
    logged = [line.strip() for line in (tmp_path / "env.log").read_text().splitlines()]
    assert logged == [f"{c} {expected}".strip() for c in ("squeue", "sinfo", "squeue", "sinfo")]


def test_a_release_that_cannot_be_read_adds_nothing(tmp_path, monkeypatch):
    bindir = standin_slurm(tmp_path, "22.05.8")
    (bindir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: broken' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    view = SlurmView()
    asyncio.run(view._squeue_all())
    assert view.slurm_version is None and (tmp_path / "env.log").read_text().strip() == "squeue"
