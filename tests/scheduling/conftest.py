"""Databases for the scheduler tests: SQLite always, PostgreSQL wherever a server answers
on 127.0.0.1:5432 (in a database of its own, so other suites' clean-ups never meet these
tables, nor these tests theirs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from csautomation.scheduling.tables import JOBS_TABLE, create_tables
from csautomation.store.repo import make_engine

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "csauto_scheduling_test"


def _postgres() -> str:
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("select 1 from pg_database where datname = :name"), {"name": DATABASE}
            ).first()
            if exists is None:
                conn.execute(text(f"create database {DATABASE}"))
    except OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    finally:
        admin.dispose()
    return f"{SERVER}/{DATABASE}"


def _wipe(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"drop table if exists {JOBS_TABLE}"))
    SQLModel.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/csauto.db"
        return
    url = _postgres()
    _wipe(url)
    yield url
    _wipe(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    create_tables(e)
    yield e
    e.dispose()
