"""Session generations: one number per person, stamped into each session when it starts
and compared on every request. Sign-out and `csauto people revoke` raise it, which ends
every session of that person at once, in every process that reads this store."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, select
from sqlmodel import Field, SQLModel

from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store


class SessionGenerationRow(SQLModel, table=True):
    __tablename__ = "session_generations"
    person_id: str = Field(primary_key=True, max_length=128)
    generation: int = 0
    changed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def generation(store: Store, person_id: str) -> int:
    """The person's current generation; 0 for one whose sessions were never ended."""
    t = table(SessionGenerationRow)
    with store.engine.connect() as conn:
        found = conn.execute(select(t.c.generation).where(t.c.person_id == person_id)).scalar()
    return int(found or 0)


def end_sessions(store: Store, person_id: str, at: datetime | None = None) -> int:
    """Raise the person's generation (committed when this returns): every session made
    before now no longer matches. Returns the new generation."""
    t = table(SessionGenerationRow)
    at = at or datetime.now(UTC)
    with store.engine.begin() as conn:
        stmt = upsert(conn, t).values(person_id=person_id, generation=1, changed_at=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.person_id],
            set_={"generation": t.c.generation + 1, "changed_at": stmt.excluded.changed_at},
        )
        conn.execute(stmt)
        return int(
            conn.execute(select(t.c.generation).where(t.c.person_id == person_id)).scalar_one()
        )
