"""The quarantine table: signals we could not accept, and stored ones held back."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlmodel import col
from sqlmodel import select as orm_select

from csautomation.facts.model import Signal
from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import QuarantineRow, SignalRow

RAW_LIMIT = 64 * 1024  # characters of a bad item kept; enough to see and fix it


@dataclass(frozen=True)
class Held:
    """One item to quarantine."""

    source: str
    raw: str
    errors: Sequence[dict[str, str]]
    signal_key: str = ""
    fingerprint: str = field(default="")

    def key(self) -> str:
        if self.fingerprint:
            return self.fingerprint
        basis = f"{self.source}\n{self.signal_key}\n{self.raw}"
        return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()


def storable(text: str) -> str:
    """The text with what no column can hold (NUL, unpaired surrogates) written as escapes."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def quarantine(store: Store, items: Sequence[Held]) -> list[int]:
    """Keep every item (committed when this returns); the same item again is the same row,
    open again, seen once more. Returns the rows' ids, in order."""
    if not items:
        return []
    t = table(QuarantineRow)
    now = datetime.now(UTC)
    ids: list[int] = []
    with store.engine.begin() as conn:
        for item in items:
            values: dict[str, Any] = {
                "fingerprint": item.key(),
                "source": item.source[:64],
                "raw": storable(item.raw[:RAW_LIMIT]),
                "errors": list(item.errors),
                "signal_key": item.signal_key,
                "times": 1,
                "received_at": now,
                "last_seen_at": now,
                "status": "open",
                "resolved_by": "",
                "result_key": "",
            }
            stmt = upsert(conn, t).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.fingerprint],
                set_={
                    "times": t.c.times + 1,
                    "last_seen_at": now,
                    "errors": stmt.excluded.errors,
                    "status": "open",
                    "resolved_at": None,
                },
            ).returning(t.c.id)
            ids.append(int(conn.execute(stmt).scalar_one()))
    return ids


def held(
    store: Store, status: str | None = "open", source: str | None = None, limit: int = 200
) -> list[QuarantineRow]:
    with store.session() as s:
        q = orm_select(QuarantineRow)
        if status:
            q = q.where(QuarantineRow.status == status)
        if source:
            q = q.where(QuarantineRow.source == source)
        return list(s.exec(q.order_by(col(QuarantineRow.id)).limit(limit)).all())


def get_held(store: Store, row_id: int) -> QuarantineRow | None:
    with store.session() as s:
        return s.get(QuarantineRow, row_id)


def settle(store: Store, row_id: int, status: str, by: str, result_key: str = "") -> None:
    t = table(QuarantineRow)
    with store.engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == row_id)
            .values(
                status=status,
                resolved_by=by[:128],
                result_key=result_key,
                resolved_at=datetime.now(UTC),
            )
        )


def note_errors(store: Store, row_id: int, errors: Sequence[dict[str, str]]) -> None:
    t = table(QuarantineRow)
    with store.engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == row_id).values(errors=list(errors)))


def release_signal(store: Store, key: str) -> bool:
    """Send a stored signal back to the evaluation outbox; False when no such signal."""
    t = table(SignalRow)
    with store.engine.begin() as conn:
        found = conn.execute(select(t.c.id).where(t.c.idempotency_key == key)).scalar()
        if found is None:
            return False
        conn.execute(update(t).where(t.c.id == found).values(evaluated_at=None))
    return True


def replace_signal(store: Store, key: str, signal: Signal) -> bool:
    """Put a corrected signal in the place of the stored one with this key (one the
    pipeline held because it could not be evaluated), pending evaluation. The old row is
    deleted and the correction stored as a new row under the same key, so every facts
    reader sees a new history version and reads the account again. False when no signal
    has the key (nothing is stored then)."""
    t = table(SignalRow)
    with store.engine.begin() as conn:
        found = conn.execute(select(t.c.id).where(t.c.idempotency_key == key)).scalar()
        if found is None:
            return False
        conn.execute(delete(t).where(t.c.id == found))
        conn.execute(
            insert(t).values(
                idempotency_key=key,
                account_id=signal.account_id,
                type=signal.type.value,
                occurred_at=signal.occurred_at,
                payload=signal.payload,
                received_at=datetime.now(UTC),
                evaluated_at=None,
            )
        )
    return True
