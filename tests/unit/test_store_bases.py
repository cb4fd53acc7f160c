"""The six stores' declarative bases come from one factory (carme_core.db.declarative_base): each keeps its
own MetaData (its own tables and migrations) with Carme's constraint names, UTC datetimes and String(255)."""

from __future__ import annotations

import importlib
from datetime import datetime

import sqlalchemy as sa

from carme_core.db import NAMING_CONVENTION, UTCDateTime

STORES = ("carme_quota.store", "carme_services.ssh.store", "carme_services.reservations.store",
          "carme_services.cockpit.store", "carme_services.sessions.store", "carme_services.announcements.store")


def test_each_store_has_its_own_metadata_with_the_shared_conventions():
    bases = [importlib.import_module(name).Base for name in STORES]
    assert len({id(b.metadata) for b in bases}) == len(STORES)
    tables = [set(b.metadata.tables) for b in bases]
    assert all(t for t in tables) and sum(map(len, tables)) == len(set().union(*tables))  # no table in two
    for base in bases:
        assert base.metadata.naming_convention == {**sa.MetaData().naming_convention, **NAMING_CONVENTION}
        assert isinstance(base.type_annotation_map[datetime], UTCDateTime)
        assert base.type_annotation_map[str].length == 255
    assert isinstance(bases[0].type_annotation_map[float], sa.Double)  # the quota store's extra type
