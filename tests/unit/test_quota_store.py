"""carme_quota.store on SQLite: the shared cases (tests/quota_store_cases.py), each on a new file in tmp_path."""

from __future__ import annotations

from dataclasses import fields

import pytest

from carme_quota.limits import LIMIT_FIELDS, ProjectTemplate
from carme_quota.store import TEMPLATE_LIMITS, OverrideRow, ProjectRow, database
from tests.quota_store_cases import *  # noqa: F403  (the shared test bodies and the `store` fixture)


@pytest.fixture
def quota_db(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'quota.sqlite'}")
    yield db
    db.engine.dispose()


def test_the_tables_hold_every_limit_and_template_field():
    assert set(LIMIT_FIELDS) <= set(OverrideRow.__table__.columns.keys())
    template = {f.name for f in fields(ProjectTemplate)}
    assert set(TEMPLATE_LIMITS) | {"partitions"} == template
    assert template <= set(ProjectRow.__table__.columns.keys())
