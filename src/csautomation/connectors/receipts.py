"""Receipts of vendor actions, by idempotency key (invariant 2, for vendors that cannot
deduplicate themselves, as Slack's webhooks cannot)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from csautomation.connectors.base import Receipt
from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import ReceiptRow


def receipt_for(store: Store, key: str) -> Receipt | None:
    t = table(ReceiptRow)
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.c.connector, t.c.record_id).where(t.c.idempotency_key == key)
        ).first()
    return Receipt(row[0], row[1], created=False) if row else None


def keep_receipt(store: Store, key: str, receipt: Receipt) -> None:
    t = table(ReceiptRow)
    with store.engine.begin() as conn:
        conn.execute(
            upsert(conn, t)
            .values(
                idempotency_key=key,
                connector=receipt.connector,
                record_id=receipt.record_id,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
