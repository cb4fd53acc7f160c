"""Where the login throttle keeps its state across hub restarts: one row of a table in a database
(the hub's own by default), written on every change (failed logins are rare), read at start."""

from __future__ import annotations

import json
import time

from sqlalchemy import Column, Float, Integer, MetaData, Table, Text, create_engine, select

TABLE = "carme_login_throttle"


class SQLThrottleStore:
    def __init__(self, url: str):
        self.engine = create_engine(url, future=True)
        metadata = MetaData()
        self.table = Table(TABLE, metadata, Column("id", Integer, primary_key=True), Column("state", Text),
                           Column("saved", Float))
        metadata.create_all(self.engine, checkfirst=True)

    def load(self) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(self.table.c.state).where(self.table.c.id == 1)).first()
        return json.loads(row[0]) if row else None

    def save(self, state: dict) -> None:
        text = json.dumps(state)
        with self.engine.begin() as connection:
            updated = connection.execute(
                self.table.update().where(self.table.c.id == 1).values(state=text, saved=time.time())
            ).rowcount
            if not updated:
                connection.execute(self.table.insert().values(id=1, state=text, saved=time.time()))
