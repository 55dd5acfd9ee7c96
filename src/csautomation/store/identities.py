"""Which account each of a push source's users belongs to: what Segment-style `group` (and,
when mapped, `identify`) calls say, kept so that the user's later `track` calls land on the
account. One row per (source, user); a call older than the link already kept does not
replace it (deliveries may arrive out of order)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, select
from sqlmodel import Field, SQLModel

from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store


class SourceIdentityRow(SQLModel, table=True):
    __tablename__ = "source_identities"
    source: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=200)
    account_id: str = Field(max_length=128)
    linked_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    message_id: str = Field(default="", max_length=200)  # the call that made the link


def link_user(
    store: Store, source: str, user_id: str, account_id: str, at: datetime, message_id: str
) -> None:
    """Committed when this returns."""
    t = table(SourceIdentityRow)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    with store.engine.begin() as conn:
        stmt = upsert(conn, t).values(
            source=source[:64],
            user_id=user_id[:200],
            account_id=account_id,
            linked_at=at,
            message_id=message_id[:200],
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.source, t.c.user_id],
                set_={
                    "account_id": stmt.excluded.account_id,
                    "linked_at": stmt.excluded.linked_at,
                    "message_id": stmt.excluded.message_id,
                },
                where=t.c.linked_at <= stmt.excluded.linked_at,
            )
        )


def user_account(store: Store, source: str, user_id: str) -> str | None:
    t = table(SourceIdentityRow)
    with store.engine.connect() as conn:
        found = conn.execute(
            select(t.c.account_id).where(t.c.source == source, t.c.user_id == user_id)
        ).scalar()
    return None if found is None else str(found)
