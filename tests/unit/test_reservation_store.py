"""carme_services.reservations.store on SQLite: the shared cases (tests/reservation_store_cases.py), each on a new file in tmp_path."""

from __future__ import annotations

import pytest

from carme_services.reservations.store import database
from tests.reservation_store_cases import *  # noqa: F403  (the shared test bodies and the `store` fixture)


@pytest.fixture
def reservation_db(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'reservations.sqlite'}")
    yield db
    db.engine.dispose()
