"""The engine factory and the helpers every repository shares: Core tables, dialect-aware
upserts, and UTC for the naive datetimes SQLite returns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, create_engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            # WAL: readers do not block the writer; synchronous=FULL keeps commits durable.
            # The busy timeout first: switching to WAL takes a lock too, and without it a
            # process connecting while another writes (migrates, say) fails at once
            cur = conn.cursor()
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _utc(conn: Any, _record: Any) -> None:
            # timestamptz values come back in the session's time zone, which is the server's
            # unless set: UTC, as everything we store and compare (a libpq `options` startup
            # parameter would lose to a client's PGTZ)
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
            conn.commit()

    return engine


def upsert(conn: Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT for the connection's dialect (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def table(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements: the hot paths skip the ORM's unit of work."""
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


def aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
