"""Stored signals the pipeline cannot evaluate, held in the quarantine with why: a row
that is not a valid signal, an account whose facts or rules fail, an unknown account.
`csauto quarantine retry` sends them back to evaluation. Holding the same signal again is
the same quarantine row, seen once more."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from csautomation import metrics
from csautomation.facts.model import Signal, SignalType
from csautomation.store.facts import REASON_LIMIT
from csautomation.store.outbox import PendingSignal
from csautomation.store.quarantine import Held, quarantine
from csautomation.store.repo import Store

log = logging.getLogger("csautomation.pipeline.loop")  # the pipeline's log, as before


def hold_failed(store: Store, items: Sequence[tuple[PendingSignal, str]]) -> None:
    """Stored signals that cannot be evaluated, held with why until `csauto quarantine
    retry` sends them back (after a fix, or with a corrected signal)."""
    for p, why in items:
        if p.problem:
            log.error("stored signal %s held: %s", p.signal.idempotency_key, why)
    quarantine(
        store,
        [
            Held(
                source="pipeline",
                raw=raw_signal(p.signal),
                errors=[{"field": "", "message": why}],
                signal_key=p.signal.idempotency_key,
            )
            for p, why in items
        ],
    )
    for kind in ("facts", "rules"):
        n = sum(1 for p, why in items if not p.problem and why.startswith(kind))
        if n:
            metrics.PIPELINE_HELD.labels(kind).inc(n)
    if invalid := sum(1 for p, _ in items if p.problem):
        metrics.PIPELINE_HELD.labels("invalid").inc(invalid)


def hold_unknown(store: Store, items: list[PendingSignal]) -> None:
    """Signals for an account the store does not have are stored, and held in the
    quarantine until it exists: `csauto quarantine retry` then sends them back to
    evaluation."""
    for account_id in sorted({p.signal.account_id for p in items}):
        log.warning(
            "signal(s) for unknown account %s quarantined",
            account_id,
            extra={"account_id": account_id},
        )
    quarantine(
        store,
        [
            Held(
                source="pipeline",
                raw=raw_signal(p.signal),
                errors=[
                    {"field": "account_id", "message": f"unknown account {p.signal.account_id}"}
                ],
                signal_key=p.signal.idempotency_key,
            )
            for p in items
        ],
    )
    metrics.PIPELINE_HELD.labels("unknown_account").inc(len(items))


def raw_signal(signal: Signal) -> str:
    """A stored signal as the JSON text a quarantined item keeps; written from the values
    as stored, which need not be valid (a payload too deep for JSON is kept as text)."""
    kind = signal.type.value if isinstance(signal.type, SignalType) else str(signal.type)
    data: dict[str, Any] = {
        "type": kind,
        "account_id": signal.account_id,
        "occurred_at": signal.occurred_at.isoformat().replace("+00:00", "Z"),  # as pydantic
        "payload": signal.payload,
        "idempotency_key": signal.idempotency_key,
    }
    try:
        return json.dumps(data, sort_keys=True)
    except (RecursionError, TypeError, ValueError):
        data["payload"] = repr(signal.payload)[:REASON_LIMIT]
        return json.dumps(data, sort_keys=True)
