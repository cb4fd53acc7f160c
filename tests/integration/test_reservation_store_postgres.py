"""carme_services.reservations.store on a real PostgreSQL (dev/postgres.sh): the same cases as on SQLite, each in a fresh schema."""

from __future__ import annotations

import pytest

from carme_services.reservations.store import database
from tests.reservation_store_cases import *  # noqa: F403  (the shared test bodies and the `store` fixture)

from . import postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def postgres_url():
    return postgres.postgres_url()


@pytest.fixture
def reservation_db(postgres_url):
    with postgres.fresh_schema(postgres_url, database, "reservation_test") as db:
        yield db
