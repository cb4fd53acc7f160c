"""The development PostgreSQL (dev/postgres.sh) for the stores' tests: its URL, and a fresh schema per test.

`postgres_url()` starts it (idempotently) and fails loudly, never skips, when it cannot start or
cannot be reached; the role's password is read from its root-only secret file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from carme_core.db import ServiceDatabase

REPO = Path(__file__).resolve().parents[2]
# the same variables dev/postgres.sh reads
SECRET = Path(os.environ.get("CARME_DEV_STATE", "/var/lib/carme-dev")) / "secrets" / "postgres-password"
PORT = int(os.environ.get("CARME_POSTGRES_PORT", "5433"))


def postgres_url() -> sa.URL:
    r = subprocess.run(["bash", str(REPO / "dev" / "postgres.sh"), "up"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"the development PostgreSQL did not start:\n{r.stdout}\n{r.stderr}", pytrace=False)
    url = sa.URL.create("postgresql+psycopg", username="carme", password=SECRET.read_text().strip(),
                        host="127.0.0.1", port=PORT, database="carme_test", query={"connect_timeout": "5"})
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as e:
        pytest.fail(f"PostgreSQL on 127.0.0.1:{PORT} is not reachable as carme: {e.orig}", pytrace=False)
    finally:
        engine.dispose()
    return url


@contextlib.contextmanager
def fresh_schema(url: sa.URL, database: Callable[[str], ServiceDatabase], prefix: str) -> Iterator[ServiceDatabase]:
    """A store's database in a new schema first on the search path: every table (and Alembic's) is
    made there, and dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db = database(url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))
    try:
        with db.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT current_schema()")) == schema
        yield db
    finally:
        db.engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
