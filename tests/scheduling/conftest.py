"""Databases for the scheduler tests: the session's (`db_url`: SQLite, or PostgreSQL with
`--db postgres`), with the scheduler's tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from csautomation.store.engine import make_engine
from csautomation.store.scheduler_tables import create_tables


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    create_tables(e)
    yield e
    e.dispose()
