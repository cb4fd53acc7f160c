"""carme_quota.store on a real PostgreSQL (dev/postgres.sh): the same cases as on SQLite, each in a fresh schema.

The session starts the development PostgreSQL (idempotently) and fails loudly, never skips, when it
cannot start or cannot be reached. The role's password is read from its root-only secret file.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from carme_quota.store import database
from tests.quota_store_cases import *  # noqa: F403  (the shared test bodies and the `store` fixture)

REPO = Path(__file__).resolve().parents[2]
# the same variables dev/postgres.sh reads
SECRET = Path(os.environ.get("CARME_DEV_STATE", "/var/lib/carme-dev")) / "secrets" / "postgres-password"
PORT = int(os.environ.get("CARME_POSTGRES_PORT", "5433"))
pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
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


@pytest.fixture
def quota_db(postgres_url):
    """A fresh schema first on the search path: every table (and Alembic's) is made there, then dropped."""
    schema = f"quota_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db = database(postgres_url.update_query_dict({"options": f"-csearch_path={schema}"})
                  .render_as_string(hide_password=False))
    try:
        with db.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT current_schema()")) == schema
        yield db
    finally:
        db.engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
