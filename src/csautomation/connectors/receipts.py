"""Receipts of vendor actions, by idempotency key (invariant 2, for vendors that cannot
deduplicate themselves, as Slack's webhooks cannot), each kept in one transaction with the
action's decision-ledger entry: a receipt is there exactly when its entry is."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from csautomation.connectors.base import Receipt
from csautomation.store import ledger
from csautomation.store.engine import aware, table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import ReceiptRow


def receipt_for(store: Store, key: str) -> Receipt | None:
    found = kept(store, key)
    return found[0] if found else None


def kept(store: Store, key: str) -> tuple[Receipt, datetime] | None:
    """The receipt kept for `key` (created=False: this call made nothing), and when."""
    t = table(ReceiptRow)
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.c.connector, t.c.record_id, t.c.created_at).where(t.c.idempotency_key == key)
        ).first()
    return (Receipt(row[0], row[1], created=False), aware(row[2])) if row else None


def keep_receipt(
    store: Store,
    key: str,
    receipt: Receipt,
    entry: ledger.Entry | None = None,
    at: datetime | None = None,
) -> None:
    """Keep the vendor's answer and, in the same transaction, `entry` in the ledger."""
    t = table(ReceiptRow)
    with store.engine.begin() as conn:
        conn.execute(
            upsert(conn, t)
            .values(
                idempotency_key=key,
                connector=receipt.connector,
                record_id=receipt.record_id,
                created_at=at or datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        if entry is not None:
            ledger.append(conn, [entry])
