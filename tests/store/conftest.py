"""The store fixture: a `Store` over the session's database (`db_url`: SQLite, or PostgreSQL
with `--db postgres`, which `make test` runs wherever a server answers and always on CI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from csautomation.store.repo import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.create_all()
    yield s
    s.engine.dispose()
