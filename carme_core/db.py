"""State for the services that keep some: one SQLAlchemy 2 engine, sessions, Alembic migrations.

Each stateful service owns its tables and ONE Alembic tree in its own package (e.g.
`carme_quota/migrations/`, with `env.py` calling `run_migrations`), recorded in
its own version table `alembic_version_<service>`. So services can be enabled, upgraded and
dropped one by one even when they share a database, and no service's migration waits for
another's. (Usage is never stored here: `sacct` is the ledger, and SLURM's associations enforce
the limits; a store keeps only what people decided.)

    db = ServiceDatabase("sqlite:////var/lib/carme/quota.sqlite", "carme-quota", carme_quota.store.MIGRATIONS)
    db.upgrade()                       # at service start: to the newest revision
    with db.session() as session:      # commits on success, rolls back on error
        session.add(...)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


def sqlite_write_ahead(db_url: str) -> bool:
    """If `db_url` is a file-backed SQLite database: every connection to that file made in this
    process from now on uses write-ahead logging with synchronous=NORMAL. A commit then appends to
    the log without waiting for the disk; the database stays consistent through a crash, and only
    a power loss or an OS crash may lose the last commits. JupyterHub commits several times per
    spawn on its path, each an fsync in SQLite's default mode. The file must be on a local disk
    (WAL shares memory between processes: no NFS). True if it applies."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    path = os.path.realpath(url.database)

    def on_connect(dbapi_connection, _record) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list") if row[1] == "main"]
        if files and files[0] and os.path.realpath(files[0]) == path:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", on_connect)
    return True


#: every store's constraint and index names (so Alembic migrations name them the same on every backend)
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s", "ck": "ck_%(table_name)s_%(constraint_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone: UTC in, UTC out)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime: Carme's stores keep timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def declarative_base(name: str, extra_types: dict | None = None) -> type[DeclarativeBase]:
    """A service store's declarative base: its own MetaData with Carme's constraint names, UTC datetimes
    and String(255) for `str` (plus `extra_types`, e.g. {float: sa.Double()}). One per store, so each
    service's tables, migrations and Alembic comparisons stay its own."""
    annotations = {datetime: UTCDateTime(), str: sa.String(255), **(extra_types or {})}
    return type(name, (DeclarativeBase,), {"__module__": __name__, "type_annotation_map": annotations,
                                            "metadata": sa.MetaData(naming_convention=NAMING_CONVENTION)})


def version_table(service: str) -> str:
    return "alembic_version_" + service.replace("-", "_")


class ServiceDatabase:
    def __init__(self, url: str, service: str, migrations: Path):
        if not url:
            raise ValueError(f"{service}: db_url is empty (an SQLAlchemy URL, e.g. sqlite:////var/lib/carme/{service}.sqlite)")
        self.url, self.service, self.migrations = url, service, Path(migrations)
        self.engine: Engine = create_engine(url, future=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        config.attributes["engine"] = self.engine
        config.attributes["version_table"] = version_table(self.service)
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": version_table(self.service)})
            return context.get_current_revision()


def run_migrations(context) -> None:
    """The body of every service's migrations/env.py: online migrations on the service's engine."""
    config = context.config
    with config.attributes["engine"].connect() as connection:
        context.configure(connection=connection, version_table=config.attributes["version_table"],
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def now_utc() -> datetime:
    """Now, timezone-aware UTC, to the second: what the services' stores write as times."""
    return datetime.now(timezone.utc).replace(microsecond=0)
