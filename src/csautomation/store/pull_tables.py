"""Where each pull stopped: one row per (kind, name), its cursor in words a person can read
(a timestamp, a vendor's cursor, the last file imported). A pull creates the table before it
runs (`create_pull_tables`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, select
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from csautomation.store.engine import table, upsert


class PullCursorRow(SQLModel, table=True):
    __tablename__ = "pull_cursors"
    kind: str = Field(primary_key=True, max_length=64)  # salesforce_accounts, ...
    name: str = Field(primary_key=True, max_length=300)  # the connector, or the folder
    cursor: str
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def create_pull_tables(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=[table(PullCursorRow)])


def load_cursor(engine: Engine, kind: str, name: str) -> str | None:
    t = table(PullCursorRow)
    with engine.connect() as conn:
        found = conn.execute(select(t.c.cursor).where(t.c.kind == kind, t.c.name == name)).scalar()
    return None if found is None else str(found)


def save_cursor(engine: Engine, kind: str, name: str, cursor: str, at: datetime) -> None:
    """Committed when this returns."""
    t = table(PullCursorRow)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    with engine.begin() as conn:
        stmt = upsert(conn, t).values(kind=kind, name=name, cursor=cursor, updated_at=at)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.kind, t.c.name],
                set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
            )
        )
