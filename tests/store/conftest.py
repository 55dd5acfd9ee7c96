"""The store fixture: SQLite always, PostgreSQL wherever a server answers on 127.0.0.1:5432."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from csautomation.store.repo import Store

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/csauto.db")
    else:
        s = Store(POSTGRES)
        try:
            with s.engine.connect() as conn:
                conn.execute(text("select 1"))
        except OperationalError:
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        SQLModel.metadata.drop_all(s.engine)
    s.create_all()
    yield s
    if request.param == "postgres":
        SQLModel.metadata.drop_all(s.engine)
    s.engine.dispose()
