"""carme_core.db: a service's own Alembic tree and version table, sessions that commit or roll back."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from carme_core.db import ServiceDatabase

MIGRATIONS = Path(__file__).resolve().parents[1] / "fixtures" / "service_migrations"


def test_upgrade_creates_the_tables_and_records_the_revision_in_the_services_own_table(tmp_path):
    db = ServiceDatabase(f"sqlite:///{tmp_path / 'state.sqlite'}", "carme-sample", MIGRATIONS)
    assert db.current_revision() is None
    db.upgrade()
    db.upgrade()  # idempotent
    assert db.current_revision() == "0001"
    tables = set(sa.inspect(db.engine).get_table_names())
    assert tables == {"notes", "alembic_version_carme_sample"}
    # a second service in the same database has its own version table and history
    other = ServiceDatabase(db.url, "carme-other", MIGRATIONS)
    assert other.current_revision() is None


def test_a_session_commits_on_success_and_rolls_back_on_error(tmp_path):
    db = ServiceDatabase(f"sqlite:///{tmp_path / 'state.sqlite'}", "carme-sample", MIGRATIONS)
    db.upgrade()
    with db.session() as session:
        session.execute(sa.text("INSERT INTO notes (text) VALUES ('kept')"))
    with pytest.raises(RuntimeError):
        with db.session() as session:
            session.execute(sa.text("INSERT INTO notes (text) VALUES ('dropped')"))
            raise RuntimeError("boom")
    with db.session() as session:
        assert [r[0] for r in session.execute(sa.text("SELECT text FROM notes"))] == ["kept"]


def test_an_empty_url_names_the_setting():
    with pytest.raises(ValueError, match="db_url"):
        ServiceDatabase("", "carme-sample", MIGRATIONS)


def test_the_hub_s_sqlite_file_commits_through_a_write_ahead_log_and_no_other_file_does(tmp_path):
    from sqlalchemy import create_engine, text

    from carme_core.db import sqlite_write_ahead

    hub, other = tmp_path / "jupyterhub.sqlite", tmp_path / "other.sqlite"
    assert sqlite_write_ahead(f"sqlite:///{hub}")
    assert not sqlite_write_ahead("sqlite://")  # in memory: nothing to do
    assert not sqlite_write_ahead("postgresql+psycopg://carme@db.example.org/carme")
    for path, mode, synchronous in ((hub, "wal", 1), (other, "delete", 2)):  # 1 NORMAL, 2 FULL
        with create_engine(f"sqlite:///{path}").connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == mode
            assert connection.execute(text("PRAGMA synchronous")).scalar() == synchronous
