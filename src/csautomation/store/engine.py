"""The engine factory and the helpers every repository shares: Core tables, dialect-aware
upserts, and UTC for the naive datetimes SQLite returns."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, create_engine


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for `url`. `read_only`: every connection refuses to write (SQLite opens
    the file read-only, and never creates it; PostgreSQL sessions are read-only), for the
    commands that only look."""
    if url.startswith("sqlite"):
        if read_only:
            engine = create_engine(url, creator=_read_only_sqlite(url))
        else:
            engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            # WAL: readers do not block the writer; synchronous=FULL keeps commits durable.
            # The busy timeout first: switching to WAL takes a lock too, and without it a
            # process connecting while another writes (migrates, say) fails at once. A
            # reader leaves the journal mode as the writers set it (setting it is a write)
            cur = conn.cursor()
            cur.execute("PRAGMA busy_timeout=5000")
            if not read_only:
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
                if read_only:
                    cur.execute("SET default_transaction_read_only = on")
            conn.commit()

    return engine


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL ("sqlite:///.csauto/csauto.db"); None for an in-memory
    database or another kind of URL."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") or path.startswith(":memory:") else path


def _read_only_sqlite(url: str) -> Any:
    """Connections to the URL's file opened read-only (`mode=ro`): SQLite neither creates
    the file nor writes to it. The URI is built here, quoted, so a path holding '?' or '#'
    still names the file."""
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"a read-only store needs a SQLite file, not {url}")
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return connect


def upsert(conn: Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT for the connection's dialect (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_PREPARED: dict[tuple[str, str], Any] = {}


def prepared(conn: Connection, name: str, build: Callable[[Connection], Any]) -> Any:
    """The statement `name` for the connection's dialect, built once and kept; its values
    are passed at execution. A statement built per call with `.values(...)` makes new bind
    parameters and a new cache key each time: most of a local CRM task's or an escalation
    record's CPU (docs/benchmarks.md, "Playbooks")."""
    key = (conn.dialect.name, name)
    stmt = _PREPARED.get(key)
    if stmt is None:
        stmt = _PREPARED[key] = build(conn)
    return stmt


def table(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements: the hot paths skip the ORM's unit of work."""
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


def aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
