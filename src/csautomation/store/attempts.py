"""Each action's attempts, counted durably across Temporal's attempts: those whose failure
came from the vendor spend the connector's `retry.attempts`; waits at our own open breaker
or rate limit (no request reached the vendor) are counted apart and spend nothing.

Temporal's own attempt number counts both, and heartbeat details do not survive a failed
attempt, so the count lives in the store, keyed by the action's idempotency key. Each
Temporal attempt is counted once (`last_attempt`), so a repeated report changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import ActionAttemptRow

__all__ = ["Attempts", "count_attempt", "prune_attempts"]


@dataclass(frozen=True)
class Attempts:
    sent: int  # failures the vendor answered (or lost): they spend retry.attempts
    waits: int  # failures at our own breaker or rate limit


def count_attempt(store: Store, key: str, attempt: int, sent: bool) -> Attempts:
    """Count Temporal's attempt number `attempt` of the action `key` as failed, at the
    vendor (`sent`) or at our own guard; the counts so far, this one included."""
    t = table(ActionAttemptRow)
    with store.engine.begin() as conn:
        row = conn.execute(select(t).where(t.c.idempotency_key == key)).first()
        was = (row.sent, row.waits, row.last_attempt) if row is not None else (0, 0, 0)
        n_sent, n_waits, last = was
        if attempt > last:
            n_sent, n_waits = (n_sent + 1, n_waits) if sent else (n_sent, n_waits + 1)
            values = {
                "sent": n_sent,
                "waits": n_waits,
                "last_attempt": attempt,
                "updated_at": datetime.now(UTC),
            }
            conn.execute(
                upsert(conn, t)
                .values(idempotency_key=key, **values)
                .on_conflict_do_update(index_elements=[t.c.idempotency_key], set_=values)
            )
    return Attempts(n_sent, n_waits)


def prune_attempts(store: Store, older_than: timedelta, now: datetime | None = None) -> int:
    """Forget the counts of actions not retried for `older_than`: they ended long ago."""
    t = table(ActionAttemptRow)
    cut = (now or datetime.now(UTC)) - older_than
    with store.engine.begin() as conn:
        return int(conn.execute(delete(t).where(t.c.updated_at < cut)).rowcount)
